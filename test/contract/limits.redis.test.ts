import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRedis, redactRedisUrl, waitForReady } from '../../src/adapters/redis/client.js';
import {
  RedisConcurrencyLimiter,
  RedisKeyEvents,
  RedisRateLimiter,
  RedisTokenBudget,
} from '../../src/adapters/redis/limits.js';
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
runLimitsContract('redis', async () => {
  const client = createRedis(server.url);
  await waitForReady(client, 10_000);
  const events = new RedisKeyEvents(client);
  return {
    rate: new RedisRateLimiter(client),
    concurrency: new RedisConcurrencyLimiter(client),
    budget: new RedisTokenBudget(client),
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
      await new RedisRateLimiter(client).consume(subject, 5);
      await new RedisRateLimiter(client, 'gg:auth').consume(subject, 5);
      await new RedisConcurrencyLimiter(client).acquire(subject, 'l1', 1, 30_000);
      await new RedisTokenBudget(client).reserve({
        subject,
        day: '2030-03-01',
        requestId: 'r1',
        min: 1,
        max: 5,
        limit: 10,
      });
      const keys = (await client.keys(`*${subject}*`)).sort();
      expect(keys).toEqual([
        `gg:auth:5:{${subject}}`,
        `gg:budget:{${subject}:2030-03-01}`,
        `gg:conc:{${subject}}`,
        `gg:rl:5:{${subject}}`,
      ]);
      // Nothing is kept forever.
      for (const key of keys) expect(await client.ttl(key)).toBeGreaterThan(0);
    } finally {
      await client.quit();
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
