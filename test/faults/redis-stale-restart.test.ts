// Redis killed and restarted WITH its data, as a persistent Redis comes back (compose runs it with
// AOF, fsync every second: the last second of writes is lost). Here: a snapshot (SAVE), 300 ms more
// of load, SIGKILL, restart from the snapshot. Settles and lease releases Redis acknowledged after
// the snapshot are gone; without a replay
// - the reservations of requests that settled in that window stay in the day's ledger for good
//   (r:<requestId> fields, counted in `used` at their full max);
// - their leases stay in the key's lease set until the 10-minute lease TTL: the key has fewer
//   slots (none, if maxConcurrent leases leaked) for 10 minutes.
// The relay sees Redis's run_id change on reconnecting and sends its latest acknowledged settles
// and releases again (both idempotent). Asserted: once every request has settled, no reservation
// is left in Redis, no ledger exceeds what the records charged (what the lost writes had counted
// may be missing: the README's bound) and every key can hold maxConcurrent requests again.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { type FakeUpstream, startFakeUpstream } from '../fakes/openai-upstream.js';
import { type LoadKey, startLoad, tally } from '../helpers/load.js';
import { type RedisServer, startRedis } from '../helpers/redis-server.js';
import { startTestRelay, type TestRelay } from '../helpers/relay.js';
import { chargedSum, checkRecords, readUsage } from './invariants.js';

const MAX_CONCURRENT = 4;
let redis: RedisServer;
let upstream: FakeUpstream;
let inspect: Redis;
let t: TestRelay;
let dataDir: string;

beforeAll(async () => {
  [redis, upstream] = await Promise.all([startRedis(), startFakeUpstream({ name: 'fake' })]);
  upstream.setDefault({ kind: 'slow-stream', chunkDelayMs: 20 });
  inspect = new Redis(redis.url, { maxRetriesPerRequest: 1 });
  inspect.on('error', () => {});
  dataDir = mkdtempSync(join(tmpdir(), 'gg-fault-stale-'));
  t = await startTestRelay({
    dataDir,
    upstreams: { fake: upstream.url },
    tiers: { free: { maxConcurrent: MAX_CONCURRENT, tokensPerDay: 1_000_000, maxTokens: 64 } },
    config: { storage: { store: 'sqlite', limits: 'redis' }, limits: { authFailuresPerMinute: 100_000 } },
    env: { REDIS_URL: redis.url },
  });
}, 60_000);

afterAll(async () => {
  await t?.stop();
  inspect?.disconnect();
  await upstream?.close();
  await redis?.stop();
  rmSync(dataDir, { recursive: true, force: true });
});

it('leaves no reservation and no lease behind after Redis comes back from a slightly old snapshot', async () => {
  const keys: LoadKey[] = [];
  for (let i = 0; i < 6; i++) keys.push(await t.issue());
  const load = startLoad({ url: t.url, keys, workers: 12, maxTokens: 16, pauseMs: 10 });
  await sleep(1_000);
  await inspect.save();
  await sleep(300);
  await redis.kill();
  await sleep(1_500);
  await redis.restart();
  await sleep(2_500);
  load.stop();
  const shots = await load.done;
  await t.relay.services.inflight.settled(Date.now() + 10_000);
  await t.relay.services.usage.flush();
  const summary = `seed ${load.seed}: ${JSON.stringify(tally(shots))}`;

  const usage = await readUsage(
    join(dataDir, 'guildgate.db'),
    keys.map((k) => k.discordId),
  );
  // What holds: records are exact (the store never depended on Redis).
  expect(checkRecords(shots, usage).problems, summary).toEqual([]);

  const left: Record<string, { ledger: number; records: number; reserved: number; leases: number }> = {};
  for (const k of keys) {
    const u = usage.get(k.discordId)!;
    const h = await inspect.hgetall(`gg:budget:{user:${k.discordId}:${u.days.at(-1)}}`);
    const keyId = u.records[0]!.keyId;
    left[k.discordId] = {
      ledger: Number(h.used ?? 0),
      records: chargedSum(u.records),
      reserved: Object.keys(h).filter((f) => f.startsWith('r:')).length,
      leases: await inspect.zcard(`gg:conc:{key:${keyId}}`),
    };
  }
  console.log(`[stale restart] ${summary}; ${JSON.stringify(left)}`);
  // The symptom a member sees: a key whose leases leaked is refused for concurrency while idle.
  const holds = await Promise.all(
    keys.flatMap((k) =>
      Array.from({ length: MAX_CONCURRENT }, async () => {
        const res = await fetch(`${t.url}/v1/chat/completions`, {
          method: 'POST',
          headers: { authorization: `Bearer ${k.key}`, 'content-type': 'application/json' },
          body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], max_tokens: 1 }),
        });
        const body = (await res.json()) as { error?: { code?: string } };
        return `${res.status} ${body.error?.code ?? ''}`.trim();
      }),
    ),
  );
  console.log(`[stale restart] idle keys asked for ${MAX_CONCURRENT} requests each: ${JSON.stringify(holds)}`);
  for (const [member, l] of Object.entries(left)) {
    expect({ member, reserved: l.reserved, leases: l.leases }, summary).toEqual({ member, reserved: 0, leases: 0 });
    expect(l.ledger, `${member}; ${summary}`).toBeLessThanOrEqual(l.records);
  }
  expect(holds.every((h) => h === '200')).toBe(true);
});
