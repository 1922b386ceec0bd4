// A relay process under steady load while its Redis is SIGKILLed and comes back empty ~2 s later,
// once per failure policy. The process must survive, answer as its policy says during the outage,
// return to Redis-backed limits afterwards, and lose no usage record on the way.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { SqliteStore } from '../../src/adapters/sqlite/sqlite-store.js';
import { type FakeUpstream, startFakeUpstream } from '../fakes/openai-upstream.js';
import { type RedisServer, startRedis } from '../helpers/redis-server.js';
import { newDiscordId } from '../helpers/relay.js';
import { processGroup, type RelayProcess } from '../helpers/relay-process.js';

const WORKERS = 4;
const TIGHT_RPM = 5;
const OUTAGE_MS = 2_000;
/** Upstream latency of the steady load, so requests are in flight whenever Redis dies. */
const UPSTREAM_DELAY_MS = 50;
/** One request is held this long upstream across the crash. */
const HELD_MS = 800;

const procs = processGroup();
let redis: RedisServer;
let upstream: FakeUpstream;
let inspect: Redis;
const dirs: string[] = [];

interface Reply {
  status: number;
  error: { message?: unknown; type?: unknown; param?: unknown; code?: unknown } | null;
  /** ms since the run started */
  started: number;
  ended: number;
}

async function chat(base: string, key: string, t0: number): Promise<Reply> {
  const started = performance.now() - t0;
  const res = await fetch(`${base}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Say hello to the guild' }] }),
  });
  const body = (await res.json()) as { error?: Reply['error'] };
  return { status: res.status, error: body.error ?? null, started, ended: performance.now() - t0 };
}

async function eventually<T>(check: () => Promise<T | null>, what: string, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const v = await check().catch(() => null);
    if (v !== null) return v;
    await sleep(50);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for: ${what}`);
}

function tally(replies: Reply[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const r of replies) {
    const k = r.error ? `${r.status} ${String(r.error.code)}` : String(r.status);
    counts[k] = (counts[k] ?? 0) + 1;
  }
  return counts;
}

interface OutageRun {
  steady: Reply[];
  burst: Reply[];
  killedAt: number;
  restartedAt: number;
  recoveredAt: number;
  aliveAfter: { exitCode: number | null; signalCode: string | null; healthz: number };
  exit: { code: number | null; signal: string | null };
  /** usage records with status ok per key, read after the relay flushed on SIGTERM */
  okRecords: { steady: number; burst: number };
}

/**
 * Starts a relay with `policy`, loads it with WORKERS clients on a roomy key, kills Redis, sends a
 * burst on a tight key once the relay noticed, restarts Redis, waits for the relay's rate counter to
 * reappear in Redis, then stops everything and counts usage records.
 */
async function outage(policy: 'open' | 'closed'): Promise<OutageRun> {
  const dir = mkdtempSync(join(tmpdir(), `gg-fault-${policy}-`));
  dirs.push(dir);
  const file = join(dir, 'guildgate.yaml');
  writeFileSync(
    file,
    stringify({
      server: { host: '127.0.0.1', port: 0, shutdownGraceMs: 5_000 },
      dataDir: join(dir, 'data'),
      storage: { store: 'sqlite', limits: 'redis' },
      limits: { onStoreFailure: policy, authFailuresPerMinute: 1_000 },
      usage: { flushIntervalMs: 50 },
      defaultTier: 'steady',
      tiers: {
        steady: { rpm: 100_000, maxConcurrent: 50, tokensPerDay: 100_000_000, maxTokens: 64 },
        tight: { rpm: TIGHT_RPM, maxConcurrent: 50, tokensPerDay: 100_000_000, maxTokens: 64 },
      },
      upstreams: {
        fake: { baseUrl: upstream.url, timeouts: { connectMs: 2_000, firstByteMs: 5_000, idleMs: 5_000 } },
      },
      models: { 'gpt-4o-mini': { routes: [{ upstream: 'fake', model: 'gpt-4o-mini' }] } },
    }),
  );
  const env = { GUILDGATE_CONFIG: file, REDIS_URL: redis.url, LOG_LEVEL: 'info' };
  const relay: RelayProcess = await procs.relay(dir, env);
  const issue = async (tier: string) => {
    const discordId = newDiscordId();
    const r = await procs.cli(dir, env, ['--json', 'keys', 'issue', '--discord-id', discordId, '--tier', tier]);
    expect(r.code, r.stderr).toBe(0);
    return JSON.parse(r.stdout) as { key: string; id: string; discordId: string };
  };
  const [steadyKey, tightKey] = await Promise.all([issue('steady'), issue('tight')]);

  const t0 = performance.now();
  const now = () => performance.now() - t0;
  const steady: Reply[] = [];
  let stop = false;
  const worker = async () => {
    while (!stop) {
      steady.push(await chat(relay.url, steadyKey.key, t0));
      await sleep(20);
    }
  };
  const workers = Array.from({ length: WORKERS }, worker);

  const burst: Reply[] = [];
  let killedAt = Number.NaN;
  let restartedAt = Number.NaN;
  let recoveredAt = Number.NaN;
  try {
    await eventually(async () => (steady.length >= 20 ? true : null), 'load running against Redis', 15_000);
    // Hold the next request upstream, then crash Redis: it was admitted against Redis and settles without it.
    const seen = upstream.requests.length;
    upstream.next({ kind: 'delay', ms: HELD_MS });
    await eventually(async () => (upstream.requests.length > seen ? true : null), 'a request held upstream', 10_000);
    await redis.kill();
    killedAt = now();
    await relay.waitForLog('limiter store unavailable', 10_000);
    for (let i = 0; i < TIGHT_RPM + 3; i++) burst.push(await chat(relay.url, tightKey.key, t0));
    await sleep(Math.max(0, killedAt + OUTAGE_MS - now()));
    await redis.restart();
    restartedAt = now();
    // Redis came back empty: the relay's counter for the steady key reappears once it uses Redis again.
    recoveredAt = await eventually(
      async () => ((await inspect.keys(`gg:rl:*{key:${steadyKey.id}}`)).length > 0 ? now() : null),
      'rate counter back in Redis',
      15_000,
    );
    await sleep(500);
  } finally {
    stop = true;
    await Promise.allSettled(workers);
    // A failed run must not leave the next one without Redis.
    if (Number.isFinite(killedAt) && !Number.isFinite(restartedAt)) await redis.restart();
  }

  const healthz = await fetch(`${relay.url}/healthz`).then((r) => r.status);
  const aliveAfter = { exitCode: relay.child.exitCode, signalCode: relay.child.signalCode, healthz };
  const exit = await relay.stop('SIGTERM');
  const settleFailures = relay.logs.filter((l) => l.msg.includes('settling the request failed')).length;

  const store = SqliteStore.open(join(dir, 'data', 'guildgate.db'));
  const okOf = async (discordId: string) =>
    (await store.listUsage(discordId, 100_000)).filter((r) => r.status === 'ok').length;
  const okRecords = { steady: await okOf(steadyKey.discordId), burst: await okOf(tightKey.discordId) };
  await store.close();

  const during = steady.filter((r) => r.started >= killedAt && r.started < restartedAt);
  console.log(
    `[${policy}] ${steady.length} steady requests; outage ${Math.round(restartedAt - killedAt)} ms with ` +
      `${during.length} requests ${JSON.stringify(tally(during))}; burst on rpm ${TIGHT_RPM} key ` +
      `${JSON.stringify(burst.map((r) => r.status))}; Redis counters back ${Math.round(recoveredAt - restartedAt)} ms ` +
      `after restart; all steady ${JSON.stringify(tally(steady))}; usage ok records ${okRecords.steady}+${okRecords.burst}; ` +
      `settle failures logged ${settleFailures}`,
  );
  return { steady, burst, killedAt, restartedAt, recoveredAt, aliveAfter, exit, okRecords };
}

function expectSurvivedAndRecorded(run: OutageRun): void {
  expect(run.aliveAfter).toEqual({ exitCode: null, signalCode: null, healthz: 200 });
  expect(run.exit).toEqual({ code: 0, signal: null });
  // Every 200 the clients saw has its usage record, including requests settled during the outage.
  expect(run.okRecords).toEqual({
    steady: run.steady.filter((r) => r.status === 200).length,
    burst: run.burst.filter((r) => r.status === 200).length,
  });
}

beforeAll(async () => {
  [redis, upstream] = await Promise.all([startRedis(), startFakeUpstream()]);
  upstream.setDefault({ kind: 'delay', ms: UPSTREAM_DELAY_MS });
  inspect = new Redis(redis.url, { maxRetriesPerRequest: 1 });
  inspect.on('error', () => {
    // Expected while Redis is killed; ioredis reconnects by itself.
  });
}, 60_000);

afterAll(async () => {
  await procs.killAll();
  inspect?.disconnect();
  await upstream?.close();
  await redis?.stop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('a relay process when Redis crashes and restarts', { timeout: 90_000 }, () => {
  it("'open' keeps serving and keeps per-process limits, then returns to Redis", async () => {
    const run = await outage('open');
    expect(tally(run.steady)).toEqual({ '200': run.steady.length });
    expect(run.steady.filter((r) => r.started >= run.killedAt && r.ended <= run.restartedAt).length).toBeGreaterThan(0);
    // The process's insurance limiter allows the tier's rpm and refuses the rest.
    expect(run.burst.map((r) => r.status)).toEqual([...Array(TIGHT_RPM).fill(200), 429, 429, 429]);
    expect(run.burst.slice(TIGHT_RPM).map((r) => r.error?.code)).toEqual(Array(3).fill('rate_limit_requests'));
    expectSurvivedAndRecorded(run);
  });

  it("'closed' answers 503 limiter_unavailable during the outage, then serves again", async () => {
    const run = await outage('closed');
    const refused = run.steady.filter((r) => r.status !== 200);
    expect(refused.length).toBeGreaterThan(0);
    for (const r of [...refused, ...run.burst]) {
      expect(r.status).toBe(503);
      expect(r.error).toEqual({
        message: expect.any(String),
        type: expect.any(String),
        param: null,
        code: 'limiter_unavailable',
      });
    }
    // Refusals only while Redis is away: none before the kill, none once its counters are back (plus
    // a moment for the relay to read the reply that brought them back).
    expect(run.steady.filter((r) => r.ended < run.killedAt).every((r) => r.status === 200)).toBe(true);
    const after = run.steady.filter((r) => r.started > run.recoveredAt + 250);
    expect(after.length).toBeGreaterThan(0);
    expect(after.every((r) => r.status === 200)).toBe(true);
    expectSurvivedAndRecorded(run);
  });
});
