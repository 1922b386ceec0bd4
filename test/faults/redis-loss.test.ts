// Redis lost under load: SIGKILLed and restarted empty after an outage (failure policy 'open', then
// 'closed'), and restarted empty at once. 12 clients over 8 members' keys, JSON and SSE; one
// member's small budget is spent before Redis dies and keeps being asked for more.
//
// What the README bounds, and what is asserted (per member, after every request settled):
// - No crash, no lost or doubled usage record: exactly one record per relayed request, none for a
//   refusal, daily aggregates equal to the records.
// - No double charge: the rebuilt Redis ledger never exceeds what the records charged, and no
//   reservation is left in it once everything settled.
// - What a lost Redis may forget is "spend not yet in the store at the moment of the loss": a
//   ledger is rebuilt from the store's records, so only requests admitted before the rebuild whose
//   records were not yet written (in flight, or in the write buffer: flushIntervalMs) can be missing.
//   Asserted: records − ledger ≤ the charges of requests that overlap the window from
//   (restart − flush interval − slack) to the moment every ledger was back in Redis.
// - The budget bound: the spent member is served at most its budget plus the same kind of spend at
//   each transition (Redis lost → in-process insurance limiter rebuilt from the store; Redis back →
//   ledger rebuilt from the store). Served means charged in its records.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { UsageRecord } from '../../src/domain/types.js';
import { type FakeUpstream, startFakeUpstream } from '../fakes/openai-upstream.js';
import { isOpenAIError, type Shot, startLoad, tally } from '../helpers/load.js';
import { type RedisServer, startRedis } from '../helpers/redis-server.js';
import { startTestRelay, type TestRelay } from '../helpers/relay.js';
import { chargedSum, checkRecords, errorCode, issueMembers, settledUsage } from './invariants.js';

const FLUSH_MS = 50;
/** Scheduling slack on two busy cores, added to each window's edges. */
const SLACK_MS = 400;
const SMALL_BUDGET = 120;

let redis: RedisServer;
let upstream: FakeUpstream;
let inspect: Redis;
const dirs: string[] = [];

beforeAll(async () => {
  [redis, upstream] = await Promise.all([startRedis(), startFakeUpstream({ name: 'fake' })]);
  upstream.setDefault({ kind: 'slow-stream', chunkDelayMs: 10 });
  inspect = new Redis(redis.url, { maxRetriesPerRequest: 1, lazyConnect: false });
  inspect.on('error', () => {
    // Expected while Redis is killed; ioredis reconnects by itself.
  });
}, 60_000);

afterAll(async () => {
  inspect?.disconnect();
  await upstream?.close();
  await redis?.stop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

async function eventually<T>(check: () => Promise<T | null> | T | null, what: string, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await Promise.resolve()
      .then(check)
      .catch(() => null);
    if (v !== null) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for: ${what}`);
    await sleep(50);
  }
}

interface Ledger {
  used: number;
  /** Reservations still held (fields r:<requestId>). */
  reserved: string[];
}

async function ledgerOf(discordId: string, days: string[]): Promise<Ledger> {
  const out: Ledger = { used: 0, reserved: [] };
  for (const day of days) {
    const h = await inspect.hgetall(`gg:budget:{user:${discordId}:${day}}`);
    out.used += Number(h.used ?? 0);
    out.reserved.push(...Object.keys(h).filter((f) => f.startsWith('r:')));
  }
  return out;
}

const today = () => new Date().toISOString().slice(0, 10);

/** Charges of the records whose request overlapped [from, to] (load clock). */
function chargedWithin(shots: Shot[], records: UsageRecord[], from: number, to: number): number {
  const byId = new Map(records.map((r) => [r.requestId, r]));
  let sum = 0;
  for (const s of shots) {
    const r = s.requestId ? byId.get(s.requestId) : undefined;
    if (r && s.started <= to && s.ended >= from) sum += r.chargedTokens;
  }
  return sum;
}

interface Scenario {
  policy: 'open' | 'closed';
  /** How long Redis stays dead once the relay noticed (0: restarted at once). */
  outageMs: number;
}

async function lose(sc: Scenario) {
  const dataDir = mkdtempSync(join(tmpdir(), 'gg-fault-redis-'));
  dirs.push(dataDir);
  await inspect.flushall();
  const t: TestRelay = await startTestRelay({
    dataDir,
    upstreams: { fake: upstream.url },
    tiers: {
      free: { maxConcurrent: 4, tokensPerDay: 1_000_000, maxTokens: 64 },
      small: { maxConcurrent: 4, tokensPerDay: SMALL_BUDGET, maxTokens: 64 },
    },
    config: {
      storage: { store: 'sqlite', limits: 'redis' },
      limits: { onStoreFailure: sc.policy, authFailuresPerMinute: 100_000 },
      usage: { flushIntervalMs: FLUSH_MS },
    },
    env: { REDIS_URL: redis.url },
  });
  try {
    const { keys, small } = await issueMembers(t);

    const load = startLoad({ url: t.url, keys, workers: 12, maxTokens: 16, pauseMs: 10 });
    let restarted = false;
    const marks = { kill: Number.NaN, down: Number.NaN, restart: Number.NaN, rebuilt: Number.NaN };
    try {
      // The small member's budget is spent while Redis still holds its ledger.
      await eventually(
        () =>
          load.shots.some((s) => s.discordId === small.discordId && errorCode(s) === 'daily_token_budget_exceeded')
            ? true
            : null,
        'the small budget spent',
      );
      // Its last served requests are recorded well before the kill, so its bound stays tight.
      await sleep(500);
      marks.kill = load.elapsed();
      await redis.kill();
      if (sc.outageMs > 0) {
        await eventually(
          () => (t.logs.some((l) => l.includes('limiter store unavailable')) ? true : null),
          'outage seen',
        );
        marks.down = load.elapsed();
        await sleep(sc.outageMs);
      } else {
        marks.down = load.elapsed();
      }
      await redis.restart();
      restarted = true;
      marks.restart = load.elapsed();
      // Every member's ledger back in Redis, rebuilt from the store by the member's next request.
      await eventually(async () => {
        for (const k of keys) if (!(await inspect.exists(`gg:budget:{user:${k.discordId}:${today()}}`))) return null;
        return true;
      }, 'every ledger rebuilt');
      marks.rebuilt = load.elapsed();
      await sleep(1_000);
    } finally {
      load.stop();
      await load.done;
      if (!restarted) await redis.restart();
    }
    const shots = load.shots;
    const summary = `seed ${load.seed}, marks ${JSON.stringify(marks, (_k, v) => (typeof v === 'number' ? Math.round(v) : v))}: ${JSON.stringify(tally(shots))}`;
    console.log(`[redis ${sc.policy} ${sc.outageMs} ms] ${shots.length} requests; ${summary}`);

    // No crash: every request answered by the relay, as the policy says, and a normal one still is.
    const allowed =
      sc.policy === 'open'
        ? ['rate_limit_concurrency', 'daily_token_budget_exceeded']
        : ['rate_limit_concurrency', 'daily_token_budget_exceeded', 'limiter_unavailable'];
    for (const s of shots) {
      expect(s.transportError, summary).toBeNull();
      if (s.status !== 200) {
        expect(isOpenAIError(s.errorBody), JSON.stringify(s.errorBody)).toBe(true);
        expect(allowed, summary).toContain(errorCode(s));
      }
    }
    expect(
      t.logs.filter((l) => l.includes('unhandled error')),
      summary,
    ).toEqual([]);
    const normal = await t.client(keys[0]!.key).chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'still there?' }],
    });
    expect(normal.choices[0]?.message.content).toBe('hello from fake');

    const usage = await settledUsage(
      t,
      dataDir,
      keys.map((k) => k.discordId),
    );
    const { problems, unseen } = checkRecords(shots, usage);
    expect(problems, summary).toEqual([]);
    expect(unseen.length, summary).toBe(1);

    // Settles queued during the outage are replayed by now: nothing stays reserved.
    const ledgers = new Map<string, Ledger>();
    for (const k of keys) {
      const days = usage.get(k.discordId)!.days;
      ledgers.set(
        k.discordId,
        await eventually(async () => {
          const l = await ledgerOf(k.discordId, days);
          return l.reserved.length === 0 ? l : null;
        }, `no reservation left for ${k.discordId}`),
      );
    }

    const totals = { records: 0, ledger: 0, mayForget: 0 };
    const lossWindow: [number, number] = [marks.restart - FLUSH_MS - SLACK_MS, marks.rebuilt + SLACK_MS];
    const killWindow: [number, number] = [marks.kill - FLUSH_MS - SLACK_MS, marks.down + SLACK_MS];
    for (const k of keys) {
      const records = usage.get(k.discordId)!.records;
      const charged = chargedSum(records);
      const ledger = ledgers.get(k.discordId)!.used;
      const mayForget = chargedWithin(shots, records, ...lossWindow);
      const line = `member ${k.discordId}: records ${charged}, ledger ${ledger}, may forget ${mayForget}; ${summary}`;
      totals.records += charged;
      totals.ledger += ledger;
      totals.mayForget += mayForget;
      expect(ledger, line).toBeLessThanOrEqual(charged);
      expect(charged - ledger, line).toBeLessThanOrEqual(mayForget);
    }
    const smallRecords = usage.get(small.discordId)!.records;
    const bound =
      SMALL_BUDGET +
      chargedWithin(shots, smallRecords, ...killWindow) +
      chargedWithin(shots, smallRecords, ...lossWindow);
    console.log(
      `[redis ${sc.policy} ${sc.outageMs} ms] charged ${JSON.stringify(totals)}; small member served ${chargedSum(smallRecords)} of ${SMALL_BUDGET}, bound ${bound}`,
    );
    expect(chargedSum(smallRecords), `small: bound ${bound}; ${summary}`).toBeLessThanOrEqual(bound);
    // The spent member kept being refused for its budget after Redis came back.
    expect(
      shots.some(
        (s) =>
          s.discordId === small.discordId &&
          s.started > marks.rebuilt &&
          errorCode(s) === 'daily_token_budget_exceeded',
      ),
      summary,
    ).toBe(true);
    if (sc.policy === 'closed') {
      expect(shots.some((s) => errorCode(s) === 'limiter_unavailable')).toBe(true);
    } else if (sc.outageMs > 0) {
      // 'open' served through the outage.
      expect(shots.some((s) => s.status === 200 && s.started > marks.down && s.ended < marks.restart)).toBe(true);
    }
  } finally {
    await t.stop();
  }
}

describe('Redis lost under load', { timeout: 90_000 }, () => {
  it("killed, 2 s down, restarted empty ('open': served by the insurance limiters)", async () => {
    await lose({ policy: 'open', outageMs: 2_000 });
  });

  it("killed, 1.5 s down, restarted empty ('closed': 503 limiter_unavailable meanwhile)", async () => {
    await lose({ policy: 'closed', outageMs: 1_500 });
  });

  it('restarted empty at once', async () => {
    await lose({ policy: 'open', outageMs: 0 });
  });
});
