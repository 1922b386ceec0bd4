// Process entry: `npm start`. Loads and validates config, starts the relay, stops gracefully on
// SIGTERM/SIGINT.
import { ConfigError, configWarnings, loadConfig } from './config/load.js';
import { createLogger } from './logger.js';
import { startRelay } from './server.js';

async function main(): Promise<void> {
  let config: ReturnType<typeof loadConfig>;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const log = createLogger(config.env.logLevel);
  for (const note of configWarnings(config)) log.warn(note);

  const relay = await startRelay(config, { log });
  log.info(
    { url: relay.url, publicBaseUrl: config.publicBaseUrl, backends: relay.services.backends, config: config.source },
    'guildgate relay listening',
  );

  const shutdown = (signal: string) => {
    log.info({ signal }, 'shutting down');
    relay.stop().then(
      () => process.exit(0),
      (err) => {
        log.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));
}

main().catch((err) => {
  process.stderr.write(`guildgate failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
