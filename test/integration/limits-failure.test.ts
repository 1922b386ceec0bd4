// The failure policy against a real Redis that crashes and comes back.
import { randomUUID } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryConcurrencyLimiter, MemoryRateLimiter, MemoryTokenBudget } from '../../src/adapters/memory/limits.js';
import { createRedis, type RedisClient, waitForReady } from '../../src/adapters/redis/client.js';
import {
  RedisConcurrencyLimiter,
  RedisKeyEvents,
  RedisRateLimiter,
  RedisTokenBudget,
} from '../../src/adapters/redis/limits.js';
import { type Limiters, type LimitsLog, withFailurePolicy } from '../../src/adapters/resilient-limits.js';
import { ServiceUnavailableError } from '../../src/domain/errors.js';
import { type RedisServer, startRedis } from '../helpers/redis-server.js';

const day = '2030-02-01';
const unique = (label: string) => `${label}-${randomUUID().slice(0, 8)}`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function recordingLog() {
  const lines: Array<{ level: 'warn' | 'info'; msg: string }> = [];
  const log: LimitsLog = {
    warn: (_obj, msg) => lines.push({ level: 'warn', msg }),
    info: (_obj, msg) => lines.push({ level: 'info', msg }),
  };
  return { log, lines };
}

function memoryLimiters(): Limiters {
  return {
    rate: new MemoryRateLimiter(),
    concurrency: new MemoryConcurrencyLimiter(),
    budget: new MemoryTokenBudget(),
  };
}

/** Repeats `check` until it holds; bounded so a broken recovery fails instead of hanging. */
async function eventually(check: () => Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 300; i++) {
    if (await check()) return;
    await sleep(50);
  }
  throw new Error(`timed out waiting for: ${what}`);
}

describe('limits under a Redis outage', () => {
  let server: RedisServer;
  let client: RedisClient;
  let redis: Limiters;

  beforeAll(async () => {
    server = await startRedis();
    client = createRedis(server.url);
    await waitForReady(client, 10_000);
    redis = {
      rate: new RedisRateLimiter(client),
      concurrency: new RedisConcurrencyLimiter(client),
      budget: new RedisTokenBudget(client),
    };
  });
  afterAll(async () => {
    client?.disconnect();
    await server?.stop();
  });

  async function crashRedis(): Promise<void> {
    await server.kill();
    await eventually(async () => client.status !== 'ready', 'client notices the crash');
  }

  async function reviveRedis(): Promise<void> {
    await server.restart();
    await waitForReady(client, 15_000);
  }

  it("'open' keeps enforcing per process while Redis is down, then returns to Redis", async () => {
    const fallback = memoryLimiters();
    const { log, lines } = recordingLog();
    const limits = withFailurePolicy(redis, fallback, 'open', log, { probeAfterMs: 200 });
    const subject = unique('open');

    // Healthy: reservations land in Redis.
    const before = await limits.budget.reserve({ subject, day, requestId: 'r-before', min: 1, max: 100, limit: 1000 });
    expect(before.ok).toBe(true);
    expect(await redis.budget.used(subject, day)).toBe(100);

    await crashRedis();

    // Rate limits are still decided, now by this process alone.
    const decisions = [];
    for (let i = 0; i < 4; i++) decisions.push(await limits.rate.consume(subject, 3));
    expect(decisions.map((d) => d.allowed)).toEqual([true, true, true, false]);

    expect(await limits.concurrency.acquire(subject, 'lease-1', 1, 30_000)).toEqual({ ok: true, active: 1 });
    expect((await limits.concurrency.acquire(subject, 'lease-2', 1, 30_000)).ok).toBe(false);
    await limits.concurrency.release(subject, 'lease-1');
    expect((await fallback.concurrency.acquire(subject, 'lease-2', 1, 30_000)).ok).toBe(true);

    const during = await limits.budget.reserve({ subject, day, requestId: 'r-during', min: 1, max: 300, limit: 1000 });
    expect(during).toMatchObject({ ok: true, granted: 300 });
    expect(await fallback.budget.used(subject, day)).toBe(300);

    // r-before was reserved on Redis: its settle waits for Redis (the answer is this process's count).
    expect(await limits.budget.settle({ subject, day, requestId: 'r-before', actual: 40 })).toEqual({ used: 300 });

    await reviveRedis();
    const probe = unique('probe');
    await eventually(async () => {
      await limits.rate.consume(probe, 1000);
      return lines.some((l) => l.level === 'info');
    }, 'primary used again');
    // Redis kept nothing, so the next decision counts from one again: it came from Redis.
    const fresh = await limits.rate.consume(subject, 3);
    expect(fresh).toMatchObject({ allowed: true, remaining: 2 });

    // The outage reservation settles where it was made, exactly once.
    expect(await limits.budget.settle({ subject, day, requestId: 'r-during', actual: 120 })).toEqual({ used: 120 });
    expect(await limits.budget.settle({ subject, day, requestId: 'r-during', actual: 120 })).toEqual({ used: 120 });
    // Redis restarted empty: the queued settle found no reservation there and charged nothing, and
    // what the fallback admitted reached Redis as a charge (this budget has no usage records to
    // rebuild the day from; with them a rebuilt day counts it already: see the contract tests).
    await eventually(async () => (await redis.budget.used(subject, day)) === 120, 'outage spend charged to Redis');

    // One warning for the outage, one note for the recovery: not one per request.
    expect(lines.map((l) => l.level)).toEqual(['warn', 'info']);
  });

  it('releases that fail while Redis is down free their slots in Redis once it is back', async () => {
    const { log, lines } = recordingLog();
    const limits = withFailurePolicy(redis, memoryLimiters(), 'open', log, { probeAfterMs: 200 });
    const subject = unique('release');
    const leases = `gg:conc:{${subject}}`;
    const ttlMs = 600_000; // As in production: the leases must not simply expire during the test.

    expect(await limits.concurrency.acquire(subject, 'lease-a', 2, ttlMs)).toEqual({ ok: true, active: 1 });
    expect(await limits.concurrency.acquire(subject, 'lease-b', 2, ttlMs)).toEqual({ ok: true, active: 2 });
    expect((await limits.concurrency.acquire(subject, 'lease-x', 2, ttlMs)).ok).toBe(false);

    // A snapshot brings the leases back after the restart, as a persistent or replicated Redis would.
    const [, dir] = (await client.config('GET', 'dir')) as [string, string];
    await client.save();
    try {
      await crashRedis();
      await expect(limits.concurrency.release(subject, 'lease-a')).resolves.toBeUndefined();
      await expect(limits.concurrency.release(subject, 'lease-b')).resolves.toBeUndefined();

      await reviveRedis();
      expect(await client.zrange(leases, 0, -1)).toEqual(['lease-a', 'lease-b']);

      // Any limiter call probes Redis; on recovery the queued releases are replayed there.
      const probe = unique('probe');
      await eventually(async () => {
        await limits.rate.consume(probe, 1000);
        return (await client.zcard(leases)) === 0;
      }, 'queued releases replayed');

      expect(await limits.concurrency.acquire(subject, 'lease-c', 2, ttlMs)).toEqual({ ok: true, active: 1 });
      expect(await limits.concurrency.acquire(subject, 'lease-d', 2, ttlMs)).toEqual({ ok: true, active: 2 });
      // Held in Redis, not in the in-process insurance limiter.
      expect((await client.zrange(leases, 0, -1)).sort()).toEqual(['lease-c', 'lease-d']);
      expect(lines.map((l) => l.level)).toEqual(['warn', 'info']);
    } finally {
      // Later restarts in this file expect an empty Redis.
      await rm(join(dir, 'dump.rdb'), { force: true });
    }
  });

  it("'closed' refuses quickly with 503 while Redis is down and recovers by itself", async () => {
    const { log, lines } = recordingLog();
    const limits = withFailurePolicy(redis, memoryLimiters(), 'closed', log, { probeAfterMs: 200 });
    const subject = unique('closed');
    expect((await limits.rate.consume(subject, 5)).allowed).toBe(true);

    await crashRedis();

    for (let i = 0; i < 3; i++) {
      const started = Date.now();
      const err = await limits.rate.consume(subject, 5).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ServiceUnavailableError);
      expect(err).toMatchObject({ status: 503, code: 'limiter_unavailable', retryable: true });
      // Generous bound: the point is failing fast instead of queueing until a client timeout.
      expect(Date.now() - started).toBeLessThan(5_000);
    }
    await expect(
      limits.budget.reserve({ subject, day, requestId: 'r1', min: 1, max: 10, limit: 100 }),
    ).rejects.toBeInstanceOf(ServiceUnavailableError);
    await expect(limits.concurrency.acquire(subject, 'l1', 1, 30_000)).rejects.toBeInstanceOf(ServiceUnavailableError);

    await reviveRedis();
    await eventually(
      () =>
        limits.rate.consume(subject, 5).then(
          (d) => d.allowed,
          () => false,
        ),
      'closed policy answers again',
    );
    expect(lines.map((l) => l.level)).toEqual(['warn', 'info']);
  });

  it('key events flow again after Redis comes back, without subscribing again', async () => {
    const listenerClient = createRedis(server.url);
    await waitForReady(listenerClient, 10_000);
    const listener = new RedisKeyEvents(listenerClient);
    const publisher = new RedisKeyEvents(client);
    const heard = new Set<string>();
    await listener.subscribe((h) => heard.add(h));
    try {
      await crashRedis();
      await expect(publisher.publish('during-outage')).rejects.toThrow();
      await reviveRedis();
      // ioredis re-subscribes once its subscriber connection is back; publish until it hears.
      await eventually(async () => {
        await publisher.publish('after-restart');
        return heard.has('after-restart');
      }, 'subscriber hears events after the restart');
    } finally {
      await listener.close();
      listenerClient.disconnect();
    }
  });

  it('subscribing while Redis is down does not hang, and takes effect once it is back', async () => {
    await crashRedis();
    const listenerClient = createRedis(server.url);
    const heard = new Set<string>();
    const { log, lines } = recordingLog();
    const pending = new RedisKeyEvents(listenerClient, { subscribeWaitMs: 300, log });
    try {
      await pending.subscribe((h) => heard.add(h));
      expect(lines.map((l) => l.level)).toEqual(['warn']);
      await reviveRedis();
      const publisher = new RedisKeyEvents(client);
      await eventually(async () => {
        await publisher.publish('late-subscriber');
        return heard.has('late-subscriber');
      }, 'late subscription takes effect');
    } finally {
      await pending.close();
      listenerClient.disconnect();
    }
  });

  it('caller errors pass through instead of counting as an outage', async () => {
    const { log, lines } = recordingLog();
    const limits = withFailurePolicy(redis, memoryLimiters(), 'closed', log);
    await expect(
      limits.budget.reserve({ subject: unique('bad'), day: 'tomorrow', requestId: 'r1', min: 1, max: 10, limit: 100 }),
    ).rejects.toThrow(RangeError);
    expect(lines).toEqual([]);
  });

  it('a reserve and an acquire that ran on Redis but answered after the timeout are undone there', async () => {
    // A client that gives up after 100 ms; CLIENT PAUSE holds its writes for 400 ms, after which
    // Redis runs them: the limiter saw a timeout, Redis took the tokens and the slot.
    const slow = createRedis(server.url, { commandTimeoutMs: 100 });
    await waitForReady(slow, 10_000);
    try {
      const primary = {
        rate: new RedisRateLimiter(slow),
        concurrency: new RedisConcurrencyLimiter(slow),
        budget: new RedisTokenBudget(slow),
      };
      const { log } = recordingLog();
      const limits = withFailurePolicy(primary, memoryLimiters(), 'open', log, { probeAfterMs: 200 });
      const subject = unique('timeout');
      const ledger = `gg:budget:{${subject}:${day}}`;
      const leases = `gg:conc:{${subject}}`;
      // The day's ledger exists already (created outside the pause).
      await primary.budget.reserve({ subject, day, requestId: 'warm', min: 1, max: 1, limit: 1000 });
      await primary.budget.settle({ subject, day, requestId: 'warm', actual: 0 });

      await client.call('CLIENT', 'PAUSE', '400', 'WRITE');
      const [reserved, acquired] = await Promise.all([
        limits.budget.reserve({ subject, day, requestId: 'late', min: 1, max: 500, limit: 1000 }),
        limits.concurrency.acquire(subject, 'late', 2, 600_000),
      ]);
      // Answered by the in-process insurance limiters meanwhile.
      expect(reserved).toMatchObject({ ok: true, granted: 500 });
      expect(acquired.ok).toBe(true);
      await eventually(async () => (await client.hget(ledger, 'r:late')) === '500', 'Redis ran the late reserve');
      expect(await client.zrange(leases, 0, -1)).toEqual(['late']);

      // The request finishes on the limiter that answered it...
      await limits.budget.settle({ subject, day, requestId: 'late', actual: 30 });
      await limits.concurrency.release(subject, 'late');
      // ...and once Redis answers again, what it took there is given back.
      await eventually(async () => {
        await limits.rate.consume(unique('probe'), 1000);
        return (await client.hget(ledger, 'used')) === '30' && (await client.zcard(leases)) === 0;
      }, 'late reservation and lease undone on Redis');
      // The late reservation is gone; what the fallback admitted is charged once.
      expect(await client.hgetall(ledger)).toEqual({ used: '30', 'c:late': '30' });
    } finally {
      slow.disconnect();
    }
  });
});
