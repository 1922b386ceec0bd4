// Starts Guildgate the way an operator does (`src/main.ts` with a config file) in its own process,
// on a fresh SQLite file holding one key (issued with the operator CLI) whose tier never refuses a
// bench request.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { request } from 'undici';
import { freePort } from '../../test/helpers/redis-server.js';
import { type Child, spawnTs, waitUntil } from './processes.js';

const REPO = resolve(import.meta.dirname, '../..');
const READY_TIMEOUT_MS = 60_000;
const TIER = 'bench';
const CLI_TIMEOUT_MS = 60_000;

/** Issues a bench key with the operator CLI on the relay's own config, before the relay starts. */
async function issueKey(cwd: string, env: NodeJS.ProcessEnv, discordId: string): Promise<string> {
  const { stdout } = await promisify(execFile)(
    process.execPath,
    [join(REPO, 'bin/guildgate.mjs'), 'keys', 'issue', '--discord-id', discordId, '--json'],
    { cwd, env, timeout: CLI_TIMEOUT_MS },
  );
  const key = (JSON.parse(stdout) as { key?: unknown }).key;
  if (typeof key !== 'string') throw new Error('`guildgate keys issue --json` printed no key');
  return key;
}

export interface GuildgateTarget {
  child: Child;
  url: string;
  /** The API key to send as `Authorization: Bearer ...` (the first of `apiKeys`). */
  apiKey: string;
  /** One key per member, when several were asked for. */
  apiKeys: string[];
  stop(): Promise<void>;
}

export async function startGuildgate(opts: {
  name: string;
  /** Upstream base URL ending in /v1. */
  upstreamUrl: string;
  /** Use the Redis limiter at this URL; in-process limits when absent. */
  redisUrl?: string;
  /** Extra Node flags for the relay process (e.g. --cpu-prof). */
  nodeArgs?: string[];
  /** Keys to issue, each for its own member (default 1). */
  keys?: number;
}): Promise<GuildgateTarget> {
  const dir = mkdtempSync(join(tmpdir(), 'gg-bench-'));
  const dataDir = join(dir, 'data');
  const port = await freePort();
  const tiers = {
    // High enough that no bench request is ever refused: the bench measures the cost of checking.
    [TIER]: { rpm: 100_000_000, maxConcurrent: 10_000, tokensPerDay: 1_000_000_000_000, maxTokens: 256, models: ['*'] },
  };
  const config = {
    server: { host: '127.0.0.1', port, shutdownGraceMs: 5_000 },
    dataDir,
    storage: { store: 'sqlite', limits: opts.redisUrl ? 'redis' : 'memory' },
    defaultTier: TIER,
    tiers,
    upstreams: { fake: { baseUrl: opts.upstreamUrl, connections: 64 } },
    models: { 'gpt-4o-mini': { routes: [{ upstream: 'fake', model: 'gpt-4o-mini' }] } },
  };
  const configFile = join(dir, 'guildgate.json');
  writeFileSync(configFile, JSON.stringify(config, null, 2));

  // Run from the temp dir so a developer's .env or guildgate.yaml in the checkout plays no part.
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    GUILDGATE_CONFIG: configFile,
    LOG_LEVEL: 'warn',
    TSX_TSCONFIG_PATH: join(REPO, 'tsconfig.json'),
  };
  delete env.MONGODB_URI;
  delete env.REDIS_URL;
  if (opts.redisUrl) env.REDIS_URL = opts.redisUrl;
  const apiKeys: string[] = [];
  try {
    // A few CLI processes at a time: each start costs more than its work.
    const ids = Array.from({ length: opts.keys ?? 1 }, (_, i) => String(100000000000000001n + BigInt(i)));
    for (let i = 0; i < ids.length; i += 4) {
      apiKeys.push(...(await Promise.all(ids.slice(i, i + 4).map((id) => issueKey(dir, env, id)))));
    }
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const child = spawnTs(opts.name, join(REPO, 'src/main.ts'), { cwd: dir, env, nodeArgs: opts.nodeArgs });
  const url = `http://127.0.0.1:${port}`;
  const stop = async () => {
    await child.stop();
    rmSync(dir, { recursive: true, force: true });
  };
  const expected = { store: 'sqlite', limits: opts.redisUrl ? 'redis' : 'memory' };
  let backends: { store?: unknown; limits?: unknown } | undefined;
  try {
    await waitUntil(
      child,
      async () => {
        const res = await request(`${url}/readyz`);
        backends = ((await res.body.json()) as { backends?: typeof backends }).backends;
        return res.statusCode === 200;
      },
      READY_TIMEOUT_MS,
    );
    // A stray setting (e.g. MONGODB_URI) must not silently measure another backend.
    if (backends?.store !== expected.store || backends?.limits !== expected.limits) {
      throw new Error(`${opts.name} runs on ${JSON.stringify(backends)}, expected ${JSON.stringify(expected)}`);
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return { child, url, apiKey: apiKeys[0]!, apiKeys, stop };
}
