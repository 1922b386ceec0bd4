import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryConcurrencyLimiter, MemoryRateLimiter, MemoryTokenBudget } from '../../src/adapters/memory/limits.js';
import {
  createRedis,
  type RedisClient,
  redactRedisUrl,
  waitForReady,
  watchRestarts,
} from '../../src/adapters/redis/client.js';
import {
  RedisConcurrencyLimiter,
  RedisKeyEvents,
  RedisRateLimiter,
  RedisTokenBudget,
} from '../../src/adapters/redis/limits.js';
import { withFailurePolicy } from '../../src/adapters/resilient-limits.js';
import { freePort, type RedisServer, startRedis } from '../helpers/redis-server.js';
import { runLimitsContract } from './limits.contract.js';

let server: RedisServer;
beforeAll(async () => {
  server = await startRedis();
});
afterAll(async () => {
  await server?.stop();
});

// Each call is a separate client, i.e. a separate replica.
runLimitsContract('redis', async (opts) => {
  const client = createRedis(server.url);
  await waitForReady(client, 10_000);
  const events = new RedisKeyEvents(client);
  return {
    rate: new RedisRateLimiter(client),
    concurrency: new RedisConcurrencyLimiter(client),
    budget: new RedisTokenBudget(client, opts?.history),
    events,
    async cleanup() {
      await events.close();
      await client.quit();
    },
  };
});

describe('redis limits: keys', () => {
  it('every key starts with gg: and carries a per-subject hash tag', async () => {
    const client = createRedis(server.url);
    await waitForReady(client, 10_000);
    try {
      const subject = `key:tagged-${Date.now()}`;
      const budget = new RedisTokenBudget(client);
      const day = '2030-03-01';
      await new RedisRateLimiter(client).consume(subject, 5);
      await new RedisRateLimiter(client, 'gg:auth').consume(subject, 5);
      await new RedisConcurrencyLimiter(client).acquire(subject, 'l1', 1, 30_000);
      await budget.reserve({ subject, day, requestId: 'r1', min: 1, max: 5, limit: 10 });
      await budget.settle({ subject, day, requestId: 'r1', actual: 3 });
      const keys = (await client.keys(`*${subject}*`)).sort();
      expect(keys).toEqual([
        `gg:auth:5:{${subject}}`,
        `gg:budget:{${subject}:${day}}`,
        `gg:conc:{${subject}}`,
        `gg:rl:5:{${subject}}`,
      ]);
      // Nothing is kept forever; the ledger lives until after its day.
      for (const key of keys) expect(await client.ttl(key)).toBeGreaterThan(0);
      expect(await client.ttl(`gg:budget:{${subject}:${day}}`)).toBeGreaterThan(3600);
    } finally {
      await client.quit();
    }
  });

  it('settled requests leave nothing behind: no ledger fields, no marker keys', async () => {
    const client = createRedis(server.url);
    await waitForReady(client, 10_000);
    try {
      const subject = `key:many-${Date.now()}`;
      const day = '2030-03-02';
      const budget = new RedisTokenBudget(client);
      const settles = 200;
      const keysBefore = await client.dbsize();
      await Promise.all(
        Array.from({ length: settles }, async (_, i) => {
          await budget.reserve({ subject, day, requestId: `r${i}`, min: 1, max: 10, limit: 1_000_000 });
          await budget.settle({ subject, day, requestId: `r${i}`, actual: 2 });
        }),
      );
      await budget.reserve({ subject, day, requestId: 'open', min: 1, max: 10, limit: 1_000_000 });
      const ledger = `gg:budget:{${subject}:${day}}`;
      // `used` and the one open reservation, however many requests were settled before.
      expect(await client.hgetall(ledger)).toEqual({ used: String(settles * 2 + 10), 'r:open': '10' });
      // One key more: the ledger (and the ledgers-since marker the first ledger of all sets).
      expect(await client.dbsize()).toBeLessThanOrEqual(keysBefore + 2);
      // Settling again, however late, changes nothing.
      expect(await budget.settle({ subject, day, requestId: 'r0', actual: 50 })).toEqual({ used: settles * 2 + 10 });
    } finally {
      await client.quit();
    }
  });

  it('Redis restarted empty: each member’s day is rebuilt from the usage records, once', async () => {
    const own = await startRedis();
    const client = createRedis(own.url);
    try {
      await waitForReady(client, 10_000);
      const day = new Date().toISOString().slice(0, 10);
      const spent = new Map<string, number>();
      const asked: string[] = [];
      const budget = new RedisTokenBudget(client, async (subject) => {
        asked.push(subject);
        return spent.get(subject) ?? 0;
      });
      const reserve = (subject: string, requestId: string, tokens: number) =>
        budget.reserve({ subject, day, requestId, min: tokens, max: tokens, limit: 1500 });
      // 1,400 of 1,500 tokens spent and recorded in the store.
      expect((await reserve('user:a', 'r1', 1400)).ok).toBe(true);
      await budget.settle({ subject: 'user:a', day, requestId: 'r1', actual: 1400 });
      spent.set('user:a', 1400);
      await own.restart();
      await waitForReady(client, 15_000);
      expect(await client.dbsize()).toBe(0);
      asked.length = 0;
      expect(await reserve('user:a', 'r2', 200)).toMatchObject({ ok: false, used: 1400 });
      expect(await reserve('user:a', 'r3', 100)).toMatchObject({ ok: true, used: 1500 });
      expect(await reserve('user:b', 'r4', 100)).toMatchObject({ ok: true, used: 100 });
      expect(asked).toEqual(['user:a', 'user:b']);
    } finally {
      client.disconnect();
      await own.stop();
    }
  });
});

describe('redis limits: batches', () => {
  async function scriptCalls(client: RedisClient): Promise<number> {
    const stats = (await client.info('commandstats')) as string;
    const calls = (name: string) => Number(new RegExp(`cmdstat_${name}:calls=(\\d+)`).exec(stats)?.[1] ?? 0);
    return calls('evalsha') + calls('eval');
  }

  it('the operations of every request in one turn reach Redis as one script call', async () => {
    const own = await startRedis();
    const client = createRedis(own.url);
    try {
      await waitForReady(client, 10_000);
      const rate = new RedisRateLimiter(client);
      const leases = new RedisConcurrencyLimiter(client);
      const budget = new RedisTokenBudget(client);
      const day = '2030-04-01';
      // The first operations load the script; count from a warm client.
      await leases.acquire('key:warm', 'l0', 1, 30_000);
      await budget.reserve({ subject: 'user:warm', day, requestId: 'r0', min: 0, max: 1, limit: 10 }).catch(() => {});
      const before = await scriptCalls(client);
      const results = await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          Promise.all([
            rate.consume(`key:k${i}`, 10),
            leases.acquire(`key:k${i}`, `l${i}`, 1, 30_000),
            budget.settle({ subject: `user:u${i}`, day, requestId: `r${i}`, actual: 1 }),
          ]),
        ),
      );
      // INFO itself is not a script call; the 60 operations made exactly one.
      expect((await scriptCalls(client)) - before).toBe(1);
      for (const [decision, lease] of results) {
        expect(decision).toMatchObject({ allowed: true, limit: 10, remaining: 9 });
        expect(lease).toEqual({ ok: true, active: 1 });
      }
    } finally {
      client.disconnect();
      await own.stop();
    }
  });

  it('operations run in the order they were issued: a release frees the slot for an acquire of the same turn', async () => {
    const client = createRedis(server.url);
    await waitForReady(client, 10_000);
    try {
      const leases = new RedisConcurrencyLimiter(client);
      const subject = `key:order-${Date.now()}`;
      expect(await leases.acquire(subject, 'first', 1, 30_000)).toEqual({ ok: true, active: 1 });
      const [, second] = await Promise.all([
        leases.release(subject, 'first'),
        leases.acquire(subject, 'second', 1, 30_000),
      ]);
      expect(second).toEqual({ ok: true, active: 1 });
    } finally {
      await client.quit();
    }
  });

  it('a batch Redis fails fails each of its operations as a store error, and the next batch runs', async () => {
    const client = createRedis(server.url);
    await waitForReady(client, 10_000);
    try {
      const leases = new RedisConcurrencyLimiter(client);
      const subject = `key:broken-${Date.now()}`;
      // A lease set that is not a sorted set: its operation raises WRONGTYPE and stops the script.
      await client.set(`gg:conc:{${subject}}`, 'not a set');
      const batch = await Promise.allSettled([
        leases.acquire(`key:fine-${Date.now()}`, 'l1', 1, 30_000),
        leases.acquire(subject, 'l2', 1, 30_000),
      ]);
      for (const r of batch) {
        expect(r.status).toBe('rejected');
        expect(((r as PromiseRejectedResult).reason as Error).message).toMatch(/WRONGTYPE/);
      }
      expect(await leases.acquire(`key:after-${Date.now()}`, 'l3', 1, 30_000)).toEqual({ ok: true, active: 1 });
    } finally {
      await client.quit();
    }
  });
});

describe('failure policy on Redis: spend and acknowledgements across an outage', () => {
  const quiet = { warn() {}, info() {} };
  const today = () => new Date().toISOString().slice(0, 10);
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  async function eventually(check: () => Promise<boolean>, what: string): Promise<void> {
    for (let i = 0; i < 300; i++) {
      if (await check().catch(() => false)) return;
      await sleep(50);
    }
    throw new Error(`timed out waiting for: ${what}`);
  }

  /** The policy over a real Redis (own server) and in-process insurance limiters, as production wires them. */
  async function setup(history?: (subject: string, day: string) => Promise<number>) {
    const own = await startRedis();
    const client = createRedis(own.url, { commandTimeoutMs: 200 });
    await waitForReady(client, 10_000);
    const primary = {
      rate: new RedisRateLimiter(client),
      concurrency: new RedisConcurrencyLimiter(client),
      budget: new RedisTokenBudget(client, history),
    };
    const fallback = {
      rate: new MemoryRateLimiter(),
      concurrency: new MemoryConcurrencyLimiter(),
      budget: new MemoryTokenBudget(history),
    };
    const limits = withFailurePolicy(primary, fallback, 'open', quiet, { probeAfterMs: 100 });
    /** Any limiter call probes Redis; the replays follow the recovery. */
    const probe = () => limits.rate.consume(`probe-${Math.random()}`, 1000).then(() => true);
    const ledger = (subject: string, day: string) => client.hgetall(`gg:budget:{${subject}:${day}}`);
    return { own, client, limits, probe, ledger };
  }

  async function teardown(own: RedisServer, client: RedisClient) {
    client.disconnect();
    await own.stop();
  }

  it('Redis unreachable, data kept: what the fallback admitted reaches the ledger once', async () => {
    const { own, client, limits, probe, ledger } = await setup();
    const pid = Number(/process_id:(\d+)/.exec(await client.info('server'))?.[1]);
    const subject = 'user:kept';
    const day = today();
    try {
      await limits.budget.reserve({ subject, day, requestId: 'r0', min: 1, max: 100, limit: 1000 });
      await limits.budget.settle({ subject, day, requestId: 'r0', actual: 40 });
      process.kill(pid, 'SIGSTOP');
      try {
        // Times out on Redis (which runs it once it resumes), then admitted by the fallback.
        expect(await limits.budget.reserve({ subject, day, requestId: 'r1', min: 1, max: 300, limit: 1000 })).toEqual({
          ok: true,
          granted: 300,
          used: 300,
          limit: 1000,
        });
        await limits.budget.settle({ subject, day, requestId: 'r1', actual: 250 });
        // Settling again on the fallback charges nothing more.
        await limits.budget.settle({ subject, day, requestId: 'r1', actual: 999 });
      } finally {
        process.kill(pid, 'SIGCONT');
      }
      await eventually(
        async () => (await probe()) && JSON.stringify(await ledger(subject, day)) === '{"used":"290","c:r1":"250"}',
        'the outage spend on the Redis ledger, and the late reservation given back',
      );
      // A replay sent again (a restart that lost nothing) changes nothing.
      limits.storeRestarted();
      await sleep(300);
      expect(await ledger(subject, day)).toEqual({ used: '290', 'c:r1': '250' });
      expect(
        await limits.budget.reserve({ subject, day, requestId: 'r2', min: 720, max: 720, limit: 1000 }),
      ).toMatchObject({ ok: false, used: 290 });
    } finally {
      await teardown(own, client);
    }
  });

  it('Redis restarted empty: the day is rebuilt from the records, which hold the outage spend already', async () => {
    const records = new Map<string, number>();
    const { own, client, limits, probe, ledger } = await setup(async (s) => records.get(s) ?? 0);
    const subject = 'user:lost';
    const cap = 'cap:tokens:relay';
    const day = today();
    const spend = async (requestId: string, actual: number) => {
      for (const s of [subject, cap]) {
        expect((await limits.budget.reserve({ subject: s, day, requestId, min: 1, max: 500, limit: 10_000 })).ok).toBe(
          true,
        );
      }
      for (const s of [subject, cap]) {
        await limits.budget.settle({ subject: s, day, requestId, actual });
        records.set(s, (records.get(s) ?? 0) + actual);
      }
    };
    try {
      await spend('before', 100);
      await own.kill();
      await eventually(async () => client.status !== 'ready', 'client notices the crash');
      await spend('during', 250);
      await own.restart();
      await waitForReady(client, 15_000);
      await eventually(
        async () =>
          (await probe()) &&
          (await ledger(subject, day)).used !== undefined &&
          (await ledger(cap, day)).used !== undefined,
        'ledgers back in Redis',
      );
      await sleep(300);
      // 350 in the records; adding the replayed 250 again would make it 600.
      for (const s of [subject, cap]) expect(Number((await ledger(s, day)).used), s).toBe(350);
    } finally {
      await teardown(own, client);
    }
  });

  it('Redis restarted from older data: acknowledged settles and releases are sent again', async () => {
    const { own, client, limits, ledger } = await setup();
    watchRestarts(client, () => limits.storeRestarted());
    const subject = 'user:stale';
    const day = today();
    const leases = `gg:conc:{${subject}}`;
    try {
      await sleep(200); // The first run_id is known.
      expect((await limits.concurrency.acquire(subject, 'l1', 1, 600_000)).ok).toBe(true);
      await limits.budget.reserve({ subject, day, requestId: 'r1', min: 1, max: 100, limit: 1000 });
      await client.save();
      await limits.budget.settle({ subject, day, requestId: 'r1', actual: 30 });
      await limits.concurrency.release(subject, 'l1');
      await own.kill();
      await own.restart();
      await waitForReady(client, 15_000);
      // The snapshot brought back the reservation and the lease; the replay takes them away again.
      await eventually(
        async () =>
          (await client.zcard(leases)) === 0 && JSON.stringify(await ledger(subject, day)) === '{"used":"30"}',
        'stale reservation settled and stale lease released',
      );
      expect((await limits.concurrency.acquire(subject, 'l2', 1, 600_000)).ok).toBe(true);
    } finally {
      await teardown(own, client);
    }
  });
});

describe('redis client URLs', () => {
  it('redacts passwords for logs', () => {
    expect(redactRedisUrl('redis://default:s3cret@cache:6379/0')).toBe('redis://default:***@cache:6379/0');
    expect(redactRedisUrl('rediss://:s3cret@cache')).toBe('rediss://:***@cache');
    expect(redactRedisUrl('redis://s3cret@cache')).toBe('redis://***@cache');
    expect(redactRedisUrl('redis-sentinel://u:p%40ss@a:26379,b:26379/mymaster?sentinelPassword=s3cret')).toBe(
      'redis-sentinel://u:***@a:26379,b:26379/mymaster?sentinelPassword=***',
    );
    expect(redactRedisUrl('redis://cache:6379')).toBe('redis://cache:6379');
  });

  it('rejects unknown schemes and a Sentinel URL without master name, without echoing secrets', () => {
    expect(() => createRedis('http://user:s3cret@cache')).toThrow(/unsupported Redis URL: http:\/\/user:\*\*\*@cache/);
    expect(() => createRedis('redis-sentinel://user:s3cret@a:26379')).toThrow(/master name/);
    expect(() => createRedis('redis-sentinel://user:s3cret@a:26379')).not.toThrow(/s3cret/);
  });

  describe('through a real Sentinel', () => {
    let sentinel: ChildProcess | undefined;
    let dir: string;
    let sentinelPort: number;

    beforeAll(async () => {
      sentinelPort = await freePort();
      dir = await mkdtemp(join(tmpdir(), 'gg-sentinel-'));
      const conf = join(dir, 'sentinel.conf');
      await writeFile(conf, `sentinel monitor gg-master 127.0.0.1 ${server.port} 1\n`);
      sentinel = spawn('redis-server', [conf, '--sentinel', '--port', String(sentinelPort), '--bind', '127.0.0.1'], {
        stdio: 'ignore',
      });
    });
    afterAll(async () => {
      if (sentinel && sentinel.exitCode === null) {
        const exited = new Promise((r) => sentinel!.once('exit', r));
        sentinel.kill('SIGKILL');
        await exited;
      }
      await rm(dir, { recursive: true, force: true });
    });

    it('finds the master by name and runs limits on it', async () => {
      const url = `redis-sentinel://127.0.0.1:${sentinelPort},127.0.0.1:1/gg-master`;
      const client = createRedis(url);
      try {
        await waitForReady(client, 15_000);
        const d = await new RedisRateLimiter(client).consume(`sentinel-${Date.now()}`, 2);
        expect(d).toMatchObject({ allowed: true, remaining: 1 });
      } finally {
        client.disconnect();
      }
    });
  });
});
