// Redis unreachable for a few seconds WITHOUT losing data (a stopped process, a network partition),
// policy 'open'. Meanwhile the in-process insurance limiter rebuilds the member's day from the store
// and admits against it; what it settles is charged to the Redis ledger once Redis answers again
// (idempotently per request). Without that, Redis's ledger would be used as it was before the
// outage and a member who spent the budget during it would get it all again: one replica would
// serve about twice the daily budget (observed before the fix: 176 of 100).
// README: "with N replicas a key can get at most N times its limits for the length of the outage"
// (N = 1 here), and the budget is a daily bound.
// Asserted: served over the whole day <= budget + what was in flight at the two transitions.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { type FakeUpstream, startFakeUpstream } from '../fakes/openai-upstream.js';
import { startLoad, tally } from '../helpers/load.js';
import { type RedisServer, startRedis } from '../helpers/redis-server.js';
import { startTestRelay, type TestRelay } from '../helpers/relay.js';
import { chargedSum, readUsage } from './invariants.js';

const BUDGET = 100;
const WORKERS = 3;
const MAX_TOKENS = 16;
let redis: RedisServer;
let upstream: FakeUpstream;
let inspect: Redis;
let t: TestRelay;
let dataDir: string;
let redisPid = 0;

beforeAll(async () => {
  [redis, upstream] = await Promise.all([startRedis(), startFakeUpstream({ name: 'fake' })]);
  inspect = new Redis(redis.url, { maxRetriesPerRequest: 1 });
  inspect.on('error', () => {});
  redisPid = Number(/process_id:(\d+)/.exec(await inspect.info('server'))?.[1]);
  dataDir = mkdtempSync(join(tmpdir(), 'gg-fault-blip-'));
  t = await startTestRelay({
    dataDir,
    upstreams: { fake: upstream.url },
    tiers: { small: { tokensPerDay: BUDGET, maxTokens: 64 } },
    config: { storage: { store: 'sqlite', limits: 'redis' }, limits: { onStoreFailure: 'open' } },
    env: { REDIS_URL: redis.url },
  });
}, 60_000);

afterAll(async () => {
  if (redisPid) process.kill(redisPid, 'SIGCONT');
  await t?.stop();
  inspect?.disconnect();
  await upstream?.close();
  await redis?.stop();
  rmSync(dataDir, { recursive: true, force: true });
});

const chat = () =>
  fetch(`${t.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], max_tokens: 1 }),
  }).then((r) => r.arrayBuffer());
let key = '';

it("keeps the day's budget across a Redis outage that lost no data", async () => {
  const issued = await t.issue();
  key = issued.key;
  // The day's ledger exists in Redis before the outage.
  await t.client(key).chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });

  process.kill(redisPid, 'SIGSTOP');
  let stopped = true;
  try {
    await (async () => {
      const deadline = Date.now() + 10_000;
      while (!t.logs.some((l) => l.includes('limiter store unavailable'))) {
        if (Date.now() > deadline) throw new Error('the relay never noticed the outage');
        await chat();
      }
    })();
    const during = startLoad({ url: t.url, keys: [issued], workers: WORKERS, requests: 40, maxTokens: MAX_TOKENS });
    const duringShots = await during.done;
    process.kill(redisPid, 'SIGCONT');
    stopped = false;
    const deadline = Date.now() + 10_000;
    while (!t.logs.some((l) => l.includes('limiter store recovered'))) {
      if (Date.now() > deadline) throw new Error('the relay never returned to Redis');
      // Only limiter calls probe Redis: a chat request (refused for the budget by now) does.
      await chat();
      await sleep(100);
    }
    const after = startLoad({ url: t.url, keys: [issued], workers: WORKERS, requests: 40, maxTokens: MAX_TOKENS });
    const afterShots = await after.done;
    await t.relay.services.inflight.settled(Date.now() + 10_000);
    await t.relay.services.usage.flush();
    const served = chargedSum(
      (await readUsage(join(dataDir, 'guildgate.db'), [issued.discordId])).get(issued.discordId)!.records,
    );
    const summary = `served ${served} of ${BUDGET}; during ${JSON.stringify(tally(duringShots))}; after ${JSON.stringify(tally(afterShots))}`;
    console.log(`[redis blip] ${summary}`);
    // Nothing was in flight at either transition (the outage was noticed by one request at a time,
    // and the load during it had finished before Redis came back); one reservation (~30) of slack.
    expect(served, summary).toBeLessThanOrEqual(BUDGET + 30);
    // The day was spent during the outage: after it, at most what was in flight as it ended.
    expect(afterShots.filter((s) => s.status === 200).length, summary).toBeLessThanOrEqual(WORKERS);
  } finally {
    if (stopped) process.kill(redisPid, 'SIGCONT');
  }
});
