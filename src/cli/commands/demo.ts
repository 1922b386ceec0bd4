// `guildgate demo`: the whole flow with no provider account. Starts the built-in demo upstream on a
// random loopback port, a relay in front of it with its own data folder (so demo keys never mix with
// real ones), issues a key and prints a ready curl line. The demo upstream exists only inside this
// command: no config file can point at it.
import type { Command } from 'commander';
import { startDemoUpstream } from '../../adapters/upstream/demo-upstream.js';
import { findLiveKey, issueKey, revokeKey } from '../../app/keys.js';
import { buildConfig } from '../../config/load.js';
import { createLogger } from '../../logger.js';
import { startRelay } from '../../server.js';
import { parsePositiveInt } from '../context.js';

const DEMO_USER = '100000000000000001';

export function registerDemoCommand(program: Command): void {
  program
    .command('demo')
    .description('run the relay against a built-in demo upstream and print a key to try it with')
    .option('--port <port>', 'relay port', '8080')
    .option('--data-dir <dir>', 'data folder for the demo', './data/demo')
    .action(async (opts) => {
      const port = parsePositiveInt(opts.port, '--port');
      const upstream = await startDemoUpstream();
      const config = buildConfig(
        {
          server: { port },
          dataDir: opts.dataDir,
          storage: { store: 'sqlite', limits: 'memory' },
          tiers: { free: { rpm: 30, maxConcurrent: 4, tokensPerDay: 50_000, maxTokens: 512, models: ['*'] } },
          upstreams: { demo: { baseUrl: upstream.url } },
          models: {
            'demo-chat': { routes: [{ upstream: 'demo', model: 'demo-chat' }] },
            'demo-embed': { routes: [{ upstream: 'demo', model: 'demo-embed' }], kind: 'embedding' },
          },
        },
        { LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn' },
        'demo',
      );
      const log = createLogger(config.env.logLevel);
      const relay = await startRelay(config, { log });
      const s = relay.services;
      const old = await findLiveKey(s, DEMO_USER);
      if (old) await revokeKey(s.keys, { keyId: old.id, actor: 'cli:demo', reason: 'new demo run' });
      const issued = await issueKey(s.keys, { discordId: DEMO_USER, actor: 'cli:demo' });
      if (!issued.ok) throw new Error(issued.message);

      process.stdout.write(
        [
          '',
          `Guildgate demo relay on ${relay.url} (demo upstream: canned replies, no provider account needed)`,
          '',
          `API key (shown once): ${issued.key}`,
          '',
          'Try it:',
          `  curl ${relay.url}/v1/chat/completions \\`,
          `    -H "Authorization: Bearer ${issued.key}" -H "Content-Type: application/json" \\`,
          `    -d '{"model":"demo-chat","messages":[{"role":"user","content":"Hello!"}]}'`,
          '',
          'Or with the openai client: baseURL = ' +
            `${relay.url}/v1` +
            ', apiKey = the key above, model = "demo-chat".',
          'Press Ctrl+C to stop.',
          '',
        ].join('\n'),
      );

      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
      });
      await relay.stop();
      await upstream.close();
    });
}
