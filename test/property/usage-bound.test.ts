// A provider's usage report can be absurd: counts that are each safe integers but whose sum is not,
// or one huge count. The relay bills at most its reservation's bound, so the record stays sane, the
// ledger moves by exactly the charge, and one bad report cannot exhaust a member's day.
import fc from 'fast-check';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { budgetUsed, params, usageOf, validBody } from '../helpers/hostile.js';
import { type Harness, startHarness } from './harness.js';

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h?.stop();
});

it('usage counts that are safe integers but whose sum is not: a sane record, the ledger moved by the charge, nothing logged as an error', async () => {
  const big = fc.integer({ min: 2 ** 52, max: Number.MAX_SAFE_INTEGER });
  await fc.assert(
    fc.asyncProperty(big, big, fc.boolean(), async (p, c, stream) => {
      await h.t.relay.services.inflight.settled(Date.now() + 5_000);
      const before = await budgetUsed(h.t, h.discordId);
      const logsBefore = h.t.logs.length;
      h.upstream.next({
        kind: 'usage',
        raw: `{"prompt_tokens":${p},"completion_tokens":${c},"total_tokens":${p + c}}`,
      });
      const res = await fetch(`${h.t.baseURL}/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${h.key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ ...validBody('chat'), stream }),
      });
      await res.text();
      await h.t.relay.services.inflight.settled(Date.now() + 5_000);
      const rec = (await usageOf(h.t, h.discordId)).find((r) => r.requestId === res.headers.get('x-request-id'))!;
      expect(Number.isSafeInteger(rec.chargedTokens), `chargedTokens ${rec.chargedTokens}`).toBe(true);
      expect((await budgetUsed(h.t, h.discordId)) - before).toBe(rec.chargedTokens);
      expect(h.t.logs.slice(logsBefore).filter((l) => (JSON.parse(l) as { level: number }).level >= 50)).toEqual([]);
    }),
    params(10),
  );
});

// One answer reporting a huge but safe count (4.5e15 tokens) is billed at the reservation's bound:
// the member is still served afterwards.
it('one absurd usage report does not exhaust a member’s daily budget', async () => {
  h.upstream.next({
    kind: 'usage',
    raw: '{"prompt_tokens":0,"completion_tokens":4503599627370496,"total_tokens":4503599627370496}',
  });
  const res = await fetch(`${h.t.baseURL}/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${h.key}`, 'content-type': 'application/json' },
    body: JSON.stringify(validBody('chat')),
  });
  await res.text();
  await h.t.relay.services.inflight.settled(Date.now() + 5_000);
  const next = await fetch(`${h.t.baseURL}/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${h.key}`, 'content-type': 'application/json' },
    body: JSON.stringify(validBody('chat')),
  });
  expect(next.status, await next.text()).toBe(200);
});
