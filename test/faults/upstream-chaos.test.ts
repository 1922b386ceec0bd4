// An upstream that hangs, resets, truncates or sends garbage, under load. A TCP chaos proxy between
// the relay and the fake provider breaks connections on a fixed cycle of faults (a few bytes into
// the response, or before it), while 12 clients send JSON and SSE requests over 10 members' keys.
// Afterwards: clients only ever got 200 or OpenAI-shaped 429/502/504 (never a 500, never a cut
// connection), each relayed request has one usage record charging no less than 0 and no more than
// its reservation, each member's in-process ledger equals its records, a small budget was never
// exceeded, and every concurrency slot came back.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { budgetSubject } from '../../src/app/admission.js';
import { type ChaosProxy, type Fault, startChaosProxy } from '../fakes/chaos-proxy.js';
import { type FakeUpstream, startFakeUpstream } from '../fakes/openai-upstream.js';
import { chatPromptEstimate } from '../helpers/estimate.js';
import { isOpenAIError, type LoadKey, seededRandom, startLoad, tally } from '../helpers/load.js';
import { startTestRelay, type TestRelay } from '../helpers/relay.js';
import { chargedSum, checkRecords, errorCode, settledUsage } from './invariants.js';

const MAX_TOKENS = 16;
const MAX_CONCURRENT = 3;
const SMALL_BUDGET = 150;
/** Short upstream timeouts, so hung connections end in seconds. */
const TIMEOUT_MS = 700;
const REQUESTS = 320;

async function eventually(check: () => boolean, what: string, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

let upstream: FakeUpstream;
let proxy: ChaosProxy;
let t: TestRelay;
let dataDir: string;

beforeAll(async () => {
  upstream = await startFakeUpstream({ name: 'fake' });
  // Streams take a few ms per chunk, so mid-stream faults meet streams in flight.
  upstream.setDefault({ kind: 'slow-stream', chunkDelayMs: 5 });
  proxy = await startChaosProxy({ port: Number(new URL(upstream.url).port) });
  dataDir = mkdtempSync(join(tmpdir(), 'gg-fault-chaos-'));
  const baseUrl = `${proxy.url}/v1`;
  t = await startTestRelay({
    dataDir,
    upstreams: { chaos: baseUrl },
    tiers: {
      free: { maxConcurrent: MAX_CONCURRENT, tokensPerDay: 1_000_000, maxTokens: 64 },
      small: { maxConcurrent: MAX_CONCURRENT, tokensPerDay: SMALL_BUDGET, maxTokens: 64 },
    },
    config: {
      upstreams: {
        chaos: { baseUrl, timeouts: { connectMs: TIMEOUT_MS, firstByteMs: TIMEOUT_MS, idleMs: TIMEOUT_MS } },
      },
    },
  });
});

afterAll(async () => {
  await t?.stop();
  await proxy?.close();
  await upstream?.close();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

describe('an upstream that hangs, resets, truncates or sends garbage', { timeout: 90_000 }, () => {
  it('never crashes, never answers 500, records and charges every relayed request once, frees every slot', async () => {
    const keys: LoadKey[] = [];
    for (let i = 0; i < 8; i++) keys.push(await t.issue(undefined, 'free'));
    const small = [await t.issue(undefined, 'small'), await t.issue(undefined, 'small')];
    keys.push(...small);

    const seed = Math.floor(Math.random() * 2 ** 31);
    const rnd = seededRandom(seed ^ 0x5eed);
    const anywhere = () => 1 + Math.floor(rnd() * 1_500);
    const inBody = () => Math.floor(rnd() * 400);
    // A fixed cycle, so every kind of fault is met in every run; the byte offsets vary with the seed.
    // Garbage strikes only after the response head: garbage in the head is a known defect (a 500,
    // test/faults/pending-garbage-head.test.ts).
    const cycle: Array<() => Fault> = [
      () => ({ kind: 'pass', closeWhenIdleMs: 10 }),
      () => ({ kind: 'hang' }),
      () => ({ kind: 'reset' }),
      () => ({ kind: 'pass', closeWhenIdleMs: 10 }),
      () => ({ kind: 'garbage', inBody: true, afterBytes: inBody() }),
      () => ({ kind: 'truncate', afterBytes: anywhere() }),
      () => ({ kind: 'pass', closeWhenIdleMs: 10 }),
      () => ({ kind: 'reset', afterBytes: anywhere() }),
      () => ({ kind: 'garbage', inBody: true, afterBytes: inBody() }),
      () => ({ kind: 'hang', afterBytes: anywhere() }),
      () => ({ kind: 'truncate', inBody: true, afterBytes: inBody() }),
    ];
    proxy.schedule((n) => cycle[(n - 1) % cycle.length]!());

    const load = startLoad({ url: t.url, keys, workers: 12, requests: REQUESTS, maxTokens: MAX_TOKENS, seed });
    const shots = await load.done;
    const summary = `seed ${seed}: ${JSON.stringify(tally(shots))}`;
    console.log(`[upstream chaos] ${shots.length} requests over ${proxy.applied.length} connections; ${summary}`);

    // The faults really happened, and really reached clients.
    const struck = new Set(proxy.applied.filter((a) => a.struck).map((a) => a.fault.kind));
    expect([...struck].sort(), summary).toEqual(['garbage', 'hang', 'reset', 'truncate']);
    const statuses = new Set(shots.map((s) => s.status));
    for (const status of [200, 502, 504]) expect(statuses, summary).toContain(status);
    expect(
      shots.some((s) => s.streamError),
      summary,
    ).toBe(true);

    // What clients saw: a relay answer every time, of the allowed kinds, in OpenAI's shape.
    for (const s of shots) {
      expect(s.transportError, summary).toBeNull();
      expect([200, 429, 502, 504], summary).toContain(s.status);
      expect(s.requestId, summary).toMatch(/^req_/);
      if (s.status !== 200) {
        expect(isOpenAIError(s.errorBody), JSON.stringify(s.errorBody)).toBe(true);
      }
      if (s.status === 429) {
        expect(['rate_limit_concurrency', 'daily_token_budget_exceeded'], summary).toContain(errorCode(s));
      }
    }
    expect(
      t.logs.filter((l) => l.includes('unhandled error')),
      summary,
    ).toEqual([]);

    // Still serving a plain request once the upstream behaves.
    proxy.schedule(null);
    proxy.setDefault({ kind: 'pass' });
    // Connections of the load close themselves when idle; the next request must not race one closing.
    await eventually(() => proxy.open === 0, 'load connections closed');
    const healthy = await t.client(keys[0]!.key).chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'still there?' }],
    });
    expect(healthy.choices[0]?.message.content).toBe('hello from fake');

    // Every slot came back: each key can hold MAX_CONCURRENT requests at once again.
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
          return { status: res.status, code: body.error?.code ?? null, small: small.some((s) => s.key === k.key) };
        }),
      ),
    );
    // A small key may have spent its budget; it must never be refused for concurrency.
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
    // Only the slot checks above ran without a load shot; they are all 200s with records.
    expect(unseen.length).toBe(holds.filter((h) => h.status === 200).length + 1);

    // No charge above the request's reservation: its prompt estimate plus max_tokens.
    const byId = new Map(shots.map((s) => [s.requestId, s]));
    for (const u of usage.values()) {
      for (const r of u.records) {
        const shot = byId.get(r.requestId);
        if (!shot) continue;
        const reservation = chatPromptEstimate([{ role: 'user', content: shot.prompt }]) + MAX_TOKENS;
        expect(r.chargedTokens, r.requestId).toBeLessThanOrEqual(reservation);
      }
    }

    // No double charge: the ledger holds exactly what the records charged (no Redis here to lose).
    for (const k of keys) {
      const u = usage.get(k.discordId)!;
      let ledger = 0;
      for (const day of u.days) ledger += await t.relay.services.limits.budget.used(budgetSubject(k.discordId), day);
      expect(ledger, `member ${k.discordId}; ${summary}`).toBe(chargedSum(u.records));
    }
    // The small budget held: served never exceeded it.
    for (const k of small) expect(chargedSum(usage.get(k.discordId)!.records)).toBeLessThanOrEqual(SMALL_BUDGET);
    expect(
      shots.some((s) => errorCode(s) === 'daily_token_budget_exceeded'),
      `small budget never reached; ${summary}`,
    ).toBe(true);
  });
});
