// SIGTERM mid-load on a real relay process (src/main.ts, SQLite store, Redis limits). 12 clients over
// 8 members' keys, JSON and SSE streams of ~0.6 s, plus three streams that would outlast the 3 s
// shutdown grace. Afterwards: exit code 0; requests in flight at the signal finished, or (only the
// long ones, only at the grace deadline) were cut; later requests were refused with 503
// shutting_down or found the listener closed; every request the relay took on (by the ids clients
// saw and the ids the provider received) has exactly one usage record in the file after exit; each
// member's Redis ledger equals its records with nothing left reserved; the small budget held.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { issueKey } from '../../src/app/keys.js';
import { loadConfig } from '../../src/config/load.js';
import { buildServices } from '../../src/container.js';
import { createLogger } from '../../src/logger.js';
import { type FakeUpstream, startFakeUpstream } from '../fakes/openai-upstream.js';
import { isOpenAIError, type LoadKey, startLoad, tally } from '../helpers/load.js';
import { type RedisServer, startRedis } from '../helpers/redis-server.js';
import { newDiscordId } from '../helpers/relay.js';
import { processGroup } from '../helpers/relay-process.js';
import { chargedSum, checkRecords, errorCode, readUsage } from './invariants.js';

const GRACE_MS = 3_000;
const SMALL_BUDGET = 150;
/** Scheduling slack on two busy cores. */
const SLACK_MS = 500;

const procs = processGroup();
let redis: RedisServer;
let upstream: FakeUpstream;
let inspect: Redis;
let dir: string;

beforeAll(async () => {
  [redis, upstream] = await Promise.all([startRedis(), startFakeUpstream({ name: 'fake' })]);
  inspect = new Redis(redis.url, { maxRetriesPerRequest: 1 });
  dir = mkdtempSync(join(tmpdir(), 'gg-fault-sigterm-'));
}, 60_000);

afterAll(async () => {
  await procs.killAll();
  inspect?.disconnect();
  await upstream?.close();
  await redis?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('SIGTERM mid-load', { timeout: 90_000 }, () => {
  it('exits 0 after finishing or cleanly cutting what was in flight, with every usage record written once', async () => {
    const file = join(dir, 'guildgate.yaml');
    writeFileSync(
      file,
      stringify({
        server: { host: '127.0.0.1', port: 0, shutdownGraceMs: GRACE_MS },
        dataDir: join(dir, 'data'),
        storage: { store: 'sqlite', limits: 'redis' },
        limits: { authFailuresPerMinute: 100_000 },
        usage: { flushIntervalMs: 200 },
        defaultTier: 'free',
        tiers: {
          free: { rpm: 100_000, maxConcurrent: 4, tokensPerDay: 1_000_000, maxTokens: 64 },
          small: { rpm: 100_000, maxConcurrent: 4, tokensPerDay: SMALL_BUDGET, maxTokens: 64 },
        },
        upstreams: {
          fake: { baseUrl: upstream.url, timeouts: { connectMs: 2_000, firstByteMs: 5_000, idleMs: 5_000 } },
        },
        models: { 'gpt-4o-mini': { routes: [{ upstream: 'fake', model: 'gpt-4o-mini' }] } },
      }),
    );
    const env = { GUILDGATE_CONFIG: file, REDIS_URL: redis.url, LOG_LEVEL: 'info' };

    // Keys issued through the app's own use case on the same file before the relay starts.
    const services = await buildServices(loadConfig(env, dir), { log: createLogger('silent') });
    const keys: LoadKey[] = [];
    /** Members of the three long streams, apart so the load's requests never take their slots. */
    const longKeys: LoadKey[] = [];
    let small: LoadKey;
    try {
      for (let i = 0; i < 11; i++) {
        const r = await issueKey(services.keys, {
          discordId: newDiscordId(),
          tier: i === 7 ? 'small' : 'free',
          actor: 'test',
        });
        if (!r.ok) throw new Error(r.message);
        (i < 8 ? keys : longKeys).push({ key: r.key, discordId: r.record.discordId });
      }
      small = keys[7]!;
    } finally {
      await services.close();
    }

    const relay = await procs.relay(dir, env);
    // Streams of ~0.6 s (4 events 150 ms apart after the first); JSON answers at once.
    upstream.setDefault({ kind: 'slow-stream', chunkDelayMs: 150 });
    const load = startLoad({
      url: relay.url,
      keys,
      workers: 12,
      maxTokens: 16,
      streamShare: 0.6,
      pauseMs: 10,
      workerStopsAfter: (s) => s.transportError === 'ECONNREFUSED',
    });
    await sleep(1_500);
    // Streams started from now on take ~8 s. Three are started at once, so they are in flight at the
    // signal whatever the load is doing, and outlast the grace.
    upstream.setDefault({ kind: 'slow-stream', chunkDelayMs: 2_000 });
    const long = startLoad({ url: relay.url, keys: longKeys, workers: 3, requests: 3, streamShare: 1, maxTokens: 16 });
    await sleep(400);
    const signalAt = load.elapsed();
    const longSignalAt = long.elapsed();
    const exit = await relay.stop('SIGTERM');
    const exitedAt = load.elapsed();
    load.stop();
    const shots = await load.done;
    const longShots = await long.done;
    const summary = `seed ${load.seed}, signal at ${Math.round(signalAt)}, exit at ${Math.round(exitedAt)}: ${JSON.stringify(tally(shots))}`;
    console.log(`[sigterm] ${shots.length} requests; ${summary}`);

    expect(exit, relay.output()).toEqual({ code: 0, signal: null });
    expect(relay.logs.filter((l) => l.level >= 50).map((l) => l.msg)).toEqual([]);

    const inFlight = shots.filter((s) => s.started < signalAt && s.ended > signalAt);
    expect(inFlight.length, summary).toBeGreaterThan(3);
    for (const s of shots) {
      if (s.status === 200 && !s.complete) {
        // Cut: only a stream, only by the grace deadline, and never one that began after the signal.
        expect(s.stream, summary).toBe(true);
        expect(s.started, summary).toBeLessThan(signalAt);
        expect(s.ended, summary).toBeGreaterThan(signalAt + GRACE_MS - SLACK_MS);
      } else if (s.status !== null && s.status !== 200) {
        expect(isOpenAIError(s.errorBody), JSON.stringify(s.errorBody)).toBe(true);
        expect(['shutting_down', 'rate_limit_concurrency', 'daily_token_budget_exceeded'], summary).toContain(
          errorCode(s),
        );
        if (errorCode(s) === 'shutting_down') expect(s.ended, summary).toBeGreaterThan(signalAt);
      } else if (s.status === null) {
        // No answer at all: only once the listener was closing or gone.
        expect(s.started, `${s.transportError}; ${summary}`).toBeGreaterThan(signalAt - SLACK_MS);
      }
    }
    // The short streams in flight at the signal completed.
    const shortInFlight = inFlight.filter((s) => s.status === 200 && s.ended < signalAt + GRACE_MS - SLACK_MS);
    expect(shortInFlight.length, summary).toBeGreaterThan(0);
    for (const s of shortInFlight) expect(s.complete, summary).toBe(true);
    // The long streams were cut, at the grace deadline.
    expect(
      longShots.map((s) => [s.status, s.complete]),
      summary,
    ).toEqual([
      [200, false],
      [200, false],
      [200, false],
    ]);
    for (const s of longShots) expect(s.ended, summary).toBeGreaterThan(longSignalAt + GRACE_MS - SLACK_MS);
    const cut = [...shots, ...longShots].filter((s) => s.status === 200 && !s.complete);

    const members = [...keys, ...longKeys];
    const usage = await readUsage(
      join(dir, 'data', 'guildgate.db'),
      members.map((k) => k.discordId),
    );
    const { problems, unseen } = checkRecords([...shots, ...longShots], usage);
    expect(problems, summary).toEqual([]);
    const records = [...usage.values()].flatMap((u) => u.records);
    const byId = new Map(records.map((r) => [r.requestId, r]));
    // Records of requests no client saw an id for: only ones that reached the provider.
    const reached = new Set(upstream.requests.map((r) => String(r.headers['x-request-id'])));
    for (const r of unseen) expect(reached.has(r.requestId), r.requestId).toBe(true);
    // Every request the provider received is recorded.
    expect([...reached].filter((id) => !byId.has(id))).toEqual([]);
    for (const s of cut) expect(byId.get(s.requestId!)?.status, s.requestId!).toBe('aborted');

    // Every settle reached Redis before exit: ledgers equal the records, nothing left reserved.
    for (const k of members) {
      const u = usage.get(k.discordId)!;
      let used = 0;
      const reserved: string[] = [];
      for (const day of u.days) {
        const h = await inspect.hgetall(`gg:budget:{user:${k.discordId}:${day}}`);
        used += Number(h.used ?? 0);
        reserved.push(...Object.keys(h).filter((f) => f.startsWith('r:')));
      }
      expect({ used, reserved }, `member ${k.discordId}; ${summary}`).toEqual({
        used: chargedSum(u.records),
        reserved: [],
      });
    }
    expect(chargedSum(usage.get(small!.discordId)!.records)).toBeLessThanOrEqual(SMALL_BUDGET);
  });
});
