// Process entry of `npm run bot` and the compose `bot` service: the Discord bot alone, on the store
// and limits the relays share (MongoDB + Redis: key changes reach every replica at once).
// `npm run bot -- register` registers the slash commands now and exits.
import type { Config } from '../src/config/schema.js';
import { buildServices } from '../src/container.js';
import { createLogger } from '../src/logger.js';
import { loadConfigOrExit } from '../src/run-process.js';
import { runCommandsCli } from './cli.js';
import { startBot } from './index.js';

async function run(config: Config): Promise<void> {
  const log = createLogger(config.env.logLevel);
  const services = await buildServices(config, { log });
  if (services.backends.limits === 'memory') {
    log.warn(
      'No Redis: relays in other processes see key changes only when their key cache expires (limits.keyCacheTtlMs). `npm start` runs relay and bot in one process.',
    );
  }
  const bot = await startBot(services, { log }).catch(async (err) => {
    await services.close();
    throw err;
  });
  const shutdown = (signal: string) => {
    log.info({ signal }, 'shutting down');
    bot
      .stop()
      .then(() => services.close())
      .then(
        () => process.exit(0),
        (err: Error) => {
          log.error({ reason: err.message }, 'shutdown failed');
          process.exit(1);
        },
      );
  };
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));
}

async function main(args: string[]): Promise<void> {
  if (args.length === 1 && args[0] === 'register') {
    process.exitCode = await runCommandsCli(['commands', 'register']);
    return;
  }
  const config = loadConfigOrExit();
  const token = config.env.discordBotToken;
  if (!config.discord || !token) {
    process.stderr.write('The bot needs a discord section in the config and DISCORD_BOT_TOKEN in the environment.\n');
    process.exit(2);
  }
  if (args.length === 0) return run(config);
  process.stderr.write(`usage: bot/main.ts [register]\n`);
  process.exit(2);
}

main(process.argv.slice(2)).catch((err) => {
  process.stderr.write(`guildgate bot failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
