// A relay in front of a well-behaved fake upstream, one member key, and the check every hostile
// exchange goes through: no 5xx, OpenAI-shaped 4xx, nothing stored or spent for a refused request,
// and a normal request still served right after.
import { expect } from 'vitest';
import { type FakeUpstream, startFakeUpstream } from '../fakes/openai-upstream.js';
import {
  budgetUsed,
  expectOpenAIError,
  normalRequest,
  portOf,
  type RawExchange,
  type RawResponse,
  usageOf,
} from '../helpers/hostile.js';
import { startTestRelay, type TestRelay } from '../helpers/relay.js';

export interface Harness {
  t: TestRelay;
  upstream: FakeUpstream;
  port: number;
  key: string;
  discordId: string;
  stop(): Promise<void>;
}

/** Limits high enough that the properties exercise input handling, not the rate limits. */
export async function startHarness(extra: Record<string, unknown> = {}): Promise<Harness> {
  const upstream = await startFakeUpstream({ name: 'up' });
  const t = await startTestRelay({
    upstreams: { up: upstream.url },
    tiers: { free: { rpm: 1_000_000, maxConcurrent: 200, tokensPerDay: 1_000_000_000 } },
    config: { limits: { authFailuresPerMinute: 1_000_000 }, ...extra },
  });
  const { key, discordId } = await t.issue();
  return {
    t,
    upstream,
    port: portOf(t),
    key,
    discordId,
    async stop() {
      await t.stop();
      await upstream.close();
    },
  };
}

/** Statuses Node's own HTTP parser answers with (no express, no body) before closing the connection. */
const BARE_STATUSES = [400, 408, 413, 414, 431];

/** Whether the answer came from Node's parser rather than the app (the app always sets x-request-id). */
export const isBare = (r: RawResponse) => r.headers['x-request-id'] === undefined;

/**
 * Sends one hostile exchange and checks the invariants; returns the first response (if any).
 * `v1`: every app 4xx must be OpenAI-shaped; `head`: a HEAD request, whose answers have no body.
 */
export async function checkHostile(
  h: Harness,
  send: () => Promise<RawExchange>,
  opts: { v1: boolean; normalAfter?: boolean; head?: boolean },
): Promise<RawResponse | undefined> {
  const { t, upstream, discordId } = h;
  await t.relay.services.inflight.settled(Date.now() + 5_000);
  const budgetBefore = await budgetUsed(t, discordId);
  const upstreamBefore = upstream.requests.length;
  const logsBefore = t.logs.length;

  const ex = await send();
  const r = ex.responses[0];
  if (!r) {
    // No answer at all is acceptable only when the server itself closed an unparseable request.
    expect(ex.closedByServer, `no response and the connection stayed open; got ${ex.raw.length} bytes`).toBe(true);
  } else {
    const text = r.body.toString('utf8');
    expect(r.status, `HTTP ${r.status}: ${text.slice(0, 300)}`).toBeLessThan(500);
    if (isBare(r)) {
      expect(BARE_STATUSES).toContain(r.status);
      expect(ex.closedByServer).toBe(true);
    } else if (r.status >= 400 && opts.v1 && !opts.head) {
      expectOpenAIError(r.status, text);
    }
  }

  await t.relay.services.inflight.settled(Date.now() + 5_000);
  if (upstream.requests.length === upstreamBefore) {
    // Never relayed: no usage record, no budget spent.
    expect(await budgetUsed(t, discordId)).toBe(budgetBefore);
    const id = r?.headers['x-request-id'];
    if (id) expect((await usageOf(t, discordId)).some((u) => u.requestId === id)).toBe(false);
  }
  // Client input is never an error of the relay's own: nothing logged at error level (pino's 50+).
  const errors = t.logs.slice(logsBefore).filter((l) => (JSON.parse(l) as { level: number }).level >= 50);
  expect(errors, errors.join('\n').slice(0, 1_000)).toEqual([]);
  if (opts.normalAfter !== false) await normalRequest(t, h.key);
  return r;
}
