import { isAbsolute, relative } from 'node:path';
import type { Command } from 'commander';
import { createRedis, redactRedisUrl } from '../../adapters/redis/client.js';
import { SqliteStore } from '../../adapters/sqlite/sqlite-store.js';
import {
  type CheckResult,
  checkConfig,
  checkDiscordBot,
  checkRedis,
  checkStore,
  checkUpstream,
  checkWebSecrets,
  scrub,
} from '../../app/doctor.js';
import { configWarnings, loadConfig } from '../../config/load.js';
import type { Config } from '../../config/schema.js';
import { sqliteFile, storeBackend } from '../../container.js';
import { ChecksFailed, output } from '../context.js';

const MONGO_TIMEOUT_MS = 4_000;

function storeCheck(cfg: Config): Promise<CheckResult> {
  if (storeBackend(cfg) === 'mongo') {
    const uri = cfg.env.mongodbUri!;
    return checkStore(`mongo at ${redactRedisUrl(uri)}`, async () => {
      const { MongoStore } = await import('../../adapters/mongo/mongo-store.js');
      return MongoStore.connect(uri, {
        retentionDays: cfg.usage.retentionDays,
        serverSelectionTimeoutMS: MONGO_TIMEOUT_MS,
      });
    });
  }
  const file = sqliteFile(cfg);
  const rel = relative(process.cwd(), file);
  const shown = rel && !rel.startsWith('..') && !isAbsolute(rel) ? rel : file;
  return checkStore(`sqlite at ${shown}`, async () => SqliteStore.open(file));
}

/** Connects, sends PING and disconnects; fails on the first connection error (the caller bounds the time). */
async function pingRedis(url: string, timeoutMs: number): Promise<void> {
  let failed: (err: Error) => void = () => {};
  const client = createRedis(url, { commandTimeoutMs: timeoutMs, onError: (err) => failed(err) });
  try {
    if (client.status !== 'ready') {
      await new Promise<void>((resolve, reject) => {
        failed = reject;
        client.once('ready', () => resolve());
      });
    }
    await client.ping();
  } finally {
    client.disconnect();
  }
}

export async function runDoctor(cfg: Config): Promise<CheckResult[]> {
  const checks: Array<CheckResult | Promise<CheckResult>> = [
    checkConfig(cfg.source, configWarnings(cfg)),
    storeCheck(cfg),
  ];
  const redisUrl = cfg.env.redisUrl;
  if (redisUrl) checks.push(checkRedis(redactRedisUrl(redisUrl), (ms) => pingRedis(redisUrl, ms)));
  for (const [name, u] of Object.entries(cfg.upstreams)) {
    checks.push(checkUpstream(name, u, cfg.env.upstreamKeys[name]));
  }
  if (cfg.env.discordBotToken && cfg.discord) {
    checks.push(checkDiscordBot(cfg.discord.apiBaseUrl, cfg.env.discordBotToken));
  }
  if (cfg.env.discordClientSecret) checks.push(checkWebSecrets());
  const results = await Promise.all(checks);
  const redisPassword = redisUrl ? /:\/\/[^:@/]*:([^@/]+)@/.exec(redisUrl)?.[1] : undefined;
  return scrub(results, [
    ...Object.values(cfg.env.upstreamKeys),
    cfg.env.discordBotToken,
    cfg.env.discordClientSecret,
    cfg.env.sessionSecret,
    cfg.env.mongodbUri,
    redisUrl,
    redisPassword,
  ]);
}

export function formatResults(results: CheckResult[]): string {
  return results
    .flatMap((r) => [
      `${r.ok ? 'ok  ' : 'FAIL'} ${r.name}: ${r.detail}`,
      ...(r.warnings ?? []).map((w) => `warn ${r.name}: ${w}`),
    ])
    .join('\n');
}

export function registerDoctorCommand(program: Command): void {
  program
    .command('doctor')
    .description('check the config, store, Redis, upstreams and Discord token; exit 3 if any check fails')
    .action(async (_opts, cmd: Command) => {
      const cfg = loadConfig();
      const results = await runDoctor(cfg);
      output(cmd, results, formatResults(results));
      const failed = results.filter((r) => !r.ok).length;
      if (failed) throw new ChecksFailed(`${failed} of ${results.length} checks failed`);
    });
}
