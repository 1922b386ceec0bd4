// Clients that vanish at random points: 12 clients over 8 members' keys, mostly streaming, walk
// away after a random number of SSE events (0 = right after the head), and some before any
// response head at all (during admission or while the upstream is thinking). Afterwards: one usage
// record per request the relay took on (by the ids clients saw and the ids the provider received),
// each walked-away stream recorded once as aborted or ok and charged between 0 and its reservation,
// ledgers equal to the records, the small budget held, and every concurrency slot free again.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { budgetSubject } from '../../src/app/admission.js';
import { type FakeUpstream, startFakeUpstream } from '../fakes/openai-upstream.js';
import { chatPromptEstimate } from '../helpers/estimate.js';
import { startLoad, tally } from '../helpers/load.js';
import { startTestRelay, type TestRelay } from '../helpers/relay.js';
import { chargedSum, checkRecords, errorCode, issueMembers, settledUsage } from './invariants.js';

const MAX_TOKENS = 16;
const MAX_CONCURRENT = 3;
const SMALL_BUDGET = 200;
const REQUESTS = 260;
// The fake's slow stream says "hello from <name>", one word per event: a long name, a long stream.
const NAME = 'fake one two three four five six seven eight';
const EVENTS = NAME.split(' ').length + 2;

let upstream: FakeUpstream;
let t: TestRelay;
let dataDir: string;

beforeAll(async () => {
  upstream = await startFakeUpstream({ name: NAME });
  upstream.setDefault({ kind: 'slow-stream', chunkDelayMs: 8 });
  dataDir = mkdtempSync(join(tmpdir(), 'gg-fault-vanish-'));
  t = await startTestRelay({
    dataDir,
    upstreams: { fake: upstream.url },
    tiers: {
      free: { maxConcurrent: MAX_CONCURRENT, tokensPerDay: 1_000_000, maxTokens: 64 },
      small: { maxConcurrent: MAX_CONCURRENT, tokensPerDay: SMALL_BUDGET, maxTokens: 64 },
    },
  });
});

afterAll(async () => {
  await t?.stop();
  await upstream?.close();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

describe('clients vanishing at random points of a stream', { timeout: 90_000 }, () => {
  it('records each request once, charges it within its reservation and frees its slot', async () => {
    const { keys, small } = await issueMembers(t);

    const load = startLoad({
      url: t.url,
      keys,
      workers: 12,
      requests: REQUESTS,
      streamShare: 0.85,
      maxTokens: MAX_TOKENS,
      abortAfterChunks: (rnd) => (rnd() < 0.2 ? null : Math.floor(rnd() * EVENTS)),
      abortBeforeHeadersMs: (rnd) => (rnd() < 0.12 ? Math.floor(rnd() * 25) : null),
    });
    const shots = await load.done;
    const summary = `seed ${load.seed}: ${JSON.stringify(tally(shots))}`;
    console.log(`[client vanish] ${shots.length} requests; ${summary}`);

    // The relay never failed a client on its own, and clients did walk away mid-stream.
    for (const s of shots) {
      expect(s.transportError, summary).toBeNull();
      if (s.status !== null && s.status !== 200) {
        expect(['rate_limit_concurrency', 'daily_token_budget_exceeded'], summary).toContain(errorCode(s));
      }
    }
    const walkedAway = shots.filter((s) => s.clientAborted && s.status === 200);
    expect(walkedAway.filter((s) => s.chunks > 0).length, summary).toBeGreaterThan(20);
    expect(walkedAway.filter((s) => s.chunks === 0).length, summary).toBeGreaterThan(0);
    expect(shots.filter((s) => s.clientAborted && s.status === null).length, summary).toBeGreaterThan(0);

    expect(
      t.logs.filter((l) => l.includes('unhandled error')),
      summary,
    ).toEqual([]);
    // Still answering normal requests.
    const { data: normal, response } = await t
      .client(keys[0]!.key)
      .chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'still there?' }] })
      .withResponse();
    expect(normal.choices[0]?.message.content).toBe(`hello from ${NAME}`);
    const checkIds = new Set([response.headers.get('x-request-id')]);

    // Every slot is free: each key holds MAX_CONCURRENT requests at once again.
    upstream.setDefault({ kind: 'delay', ms: 300 });
    const holds = await Promise.all(
      keys.flatMap((k) =>
        Array.from({ length: MAX_CONCURRENT }, async () => {
          const res = await fetch(`${t.url}/v1/chat/completions`, {
            method: 'POST',
            headers: { authorization: `Bearer ${k.key}`, 'content-type': 'application/json' },
            body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], max_tokens: 1 }),
          });
          const body = (await res.json()) as { error?: { code?: string } };
          checkIds.add(res.headers.get('x-request-id'));
          return { status: res.status, code: body.error?.code ?? null, small: k.key === small.key };
        }),
      ),
    );
    for (const h of holds) {
      if (h.small && h.code === 'daily_token_budget_exceeded') continue;
      expect(h, summary).toEqual({ status: 200, code: null, small: h.small });
    }

    const usage = await settledUsage(
      t,
      dataDir,
      keys.map((k) => k.discordId),
    );
    const { problems, unseen } = checkRecords(shots, usage);
    expect(problems, summary).toEqual([]);

    // Records no load client saw the id of: besides the checks above, only clients gone before the
    // response head, each recorded once (aborted, or ok when the answer was out before they left).
    const goneEarly = unseen.filter((r) => !checkIds.has(r.requestId));
    expect(unseen.length - goneEarly.length, summary).toBe(holds.filter((h) => h.status === 200).length + 1);
    for (const r of goneEarly) expect(['aborted', 'ok'], r.requestId).toContain(r.status);
    expect(goneEarly.length).toBeLessThanOrEqual(shots.filter((s) => s.clientAborted && s.status === null).length);
    const allRecords = [...usage.values()].flatMap((u) => u.records);
    const recorded = new Set(allRecords.map((r) => r.requestId));
    // Every request the provider received has its record, walked away from or not.
    const reachedUpstream = upstream.requests.map((r) => String(r.headers['x-request-id']));
    expect(reachedUpstream.filter((id) => !recorded.has(id))).toEqual([]);

    // Walked-away streams: recorded as aborted (or ok if the answer was complete anyway) and
    // charged at least nothing. The charge should stay within the reservation (prompt estimate plus
    // max_tokens); it can exceed it by the delivered text counted as bytes once the tokenizing
    // allowance is spent (known defect, test/faults/pending-estimate-cap.test.ts), so the assertion
    // here is the bound the relay keeps today: the estimate plus the whole reply's bytes at most.
    const byId = new Map(allRecords.map((r) => [r.requestId, r]));
    const reservationOf = (prompt: string) => chatPromptEstimate([{ role: 'user', content: prompt }]) + MAX_TOKENS;
    const excess = new Map<string, number>();
    let aborted = 0;
    for (const s of walkedAway) {
      const r = byId.get(s.requestId!)!;
      expect(['aborted', 'ok'], s.requestId!).toContain(r.status);
      if (r.status === 'aborted') aborted++;
      const reservation = reservationOf(s.prompt);
      expect(r.chargedTokens).toBeGreaterThanOrEqual(0);
      expect(r.chargedTokens, `${JSON.stringify(r)} chunks ${s.chunks}`).toBeLessThanOrEqual(
        reservation - MAX_TOKENS + Math.max(MAX_TOKENS, Buffer.byteLength(`hello from ${NAME}`)),
      );
      const over = Math.max(0, r.chargedTokens - reservation);
      excess.set(r.discordId, (excess.get(r.discordId) ?? 0) + over);
    }
    expect(aborted, summary).toBeGreaterThan(0);
    // Requests that read to the end were charged the provider's usage, within the reservation.
    for (const s of shots.filter((x) => x.status === 200 && x.complete)) {
      expect(byId.get(s.requestId!)!.chargedTokens).toBeLessThanOrEqual(reservationOf(s.prompt));
    }
    console.log(`[client vanish] charged beyond reservations: ${JSON.stringify(Object.fromEntries(excess))}`);

    // No double charge: each ledger holds exactly what its records charged.
    for (const k of keys) {
      const u = usage.get(k.discordId)!;
      let ledger = 0;
      for (const day of u.days) ledger += await t.relay.services.limits.budget.used(budgetSubject(k.discordId), day);
      expect(ledger, `member ${k.discordId}; ${summary}`).toBe(chargedSum(u.records));
    }
    // The small budget held, up to what the defect above charged beyond reservations.
    expect(chargedSum(usage.get(small.discordId)!.records)).toBeLessThanOrEqual(
      SMALL_BUDGET + (excess.get(small.discordId) ?? 0),
    );
  });
});
