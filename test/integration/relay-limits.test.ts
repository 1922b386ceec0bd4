// Daily budget under concurrency, health endpoints. Failed-auth throttling: auth-throttle.test.ts.
import OpenAI from 'openai';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { budgetDay } from '../../src/domain/budget-day.js';
import { type FakeUpstream, startFakeUpstream } from '../fakes/openai-upstream.js';
import { chatPromptEstimate } from '../helpers/estimate.js';
import { startTestRelay, type TestRelay } from '../helpers/relay.js';

let upstream: FakeUpstream;
const relays: TestRelay[] = [];
const hello = [{ role: 'user' as const, content: 'Say hello to the guild' }];

beforeAll(async () => {
  upstream = await startFakeUpstream({ name: 'up' });
});
afterEach(() => upstream.reset());
afterAll(async () => {
  await Promise.all(relays.map((r) => r.stop()));
  await upstream?.close();
});

async function relay(opts: Parameters<typeof startTestRelay>[0]): Promise<TestRelay> {
  const r = await startTestRelay(opts);
  relays.push(r);
  return r;
}

describe('daily token budget under concurrency', () => {
  it('admits only what fits: 50 parallel requests on a budget that fits 10', async () => {
    // One request reserves its prompt estimate plus max_tokens.
    const reservation = chatPromptEstimate(hello) + 20;
    const budget = reservation * 10;

    const t = await relay({
      upstreams: { up: upstream.url },
      tiers: { free: { tokensPerDay: budget, maxConcurrent: 100, rpm: 1000 } },
    });
    const { key, discordId } = await t.issue();
    // Every request stays in flight long enough that all 50 compete for the budget at once.
    upstream.setDefault({ kind: 'delay', ms: 300 });
    const client = t.client(key);
    const results = await Promise.allSettled(
      Array.from({ length: 50 }, () =>
        client.chat.completions.create({ model: 'gpt-4o-mini', messages: hello, max_tokens: 20 }),
      ),
    );
    const ok = results.filter((r) => r.status === 'fulfilled');
    const refused = results.filter((r) => r.status === 'rejected').map((r) => (r as PromiseRejectedResult).reason);
    // The first 10 reservations fit; later arrivals may also fit (with max_tokens clamped to what is
    // left) once early requests settle below their reservation. Everything else is refused.
    expect(ok.length).toBeGreaterThanOrEqual(10);
    expect(ok.length + refused.length).toBe(50);
    expect(refused.length).toBeGreaterThan(0);
    for (const err of refused) {
      expect(err).toBeInstanceOf(OpenAI.RateLimitError);
      expect(err.code).toBe('daily_token_budget_exceeded');
      expect(err.type).toBe('insufficient_quota');
      expect(Number(err.headers.get('retry-after'))).toBeGreaterThan(0);
      // Headers the refusal carries replace the ones sent so far: each arrives once.
      for (const name of ['x-ratelimit-remaining-requests', 'x-ratelimit-remaining-tokens', 'x-request-id']) {
        expect(err.headers.get(name), name).toMatch(/^[\w-]+$/);
      }
    }

    await t.relay.services.usage.flush();
    const rows = await t.relay.services.store.listUsage(discordId, 100);
    const charged = rows.reduce((sum, r) => sum + r.chargedTokens, 0);
    // The bound: a request is admitted only if its reservation (prompt estimate + max_tokens) fits what
    // is left, so charged ≤ budget + Σ max(0, actual − reserved) over admitted requests. Here the
    // upstream reports fewer tokens than reserved, so the overshoot term is 0: charged ≤ budget.
    const overshoot = rows.reduce((sum, r) => sum + Math.max(0, r.chargedTokens - reservation), 0);
    expect(overshoot).toBe(0);
    expect(charged).toBeLessThanOrEqual(budget);
    const used = await t.relay.services.limits.budget.used(
      `user:${discordId}`,
      budgetDay(new Date(), t.relay.services.config.limits.budgetTimeZone),
    );
    // Reservations are all settled: the budget counter equals what the usage records charged.
    expect(used).toBe(charged);
  });

  it('clamps max_tokens to what is left of the budget', async () => {
    const t = await relay({ upstreams: { up: upstream.url }, tiers: { free: { tokensPerDay: 100, maxTokens: 256 } } });
    const { key } = await t.issue();
    await t.client(key).chat.completions.create({ model: 'gpt-4o-mini', messages: hello, max_tokens: 200 });
    const sent = upstream.requests[0]!.body as { max_tokens: number };
    expect(sent.max_tokens).toBeGreaterThan(0);
    expect(sent.max_tokens).toBeLessThan(100);
  });
});

describe('plain HTTP surface', () => {
  it('serves health and readiness, and 404/401 in OpenAI shape', async () => {
    const t = await relay({ upstreams: { up: upstream.url } });
    const health = await fetch(`${t.url}/healthz`);
    expect(health.status).toBe(200);
    const ready = await fetch(`${t.url}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ status: 'ready', backends: { store: 'sqlite', limits: 'memory' } });
    expect(ready.headers.get('x-request-id')).toMatch(/^req_/);

    const noKey = await fetch(`${t.baseURL}/models`);
    expect(noKey.status).toBe(401);
    expect(await noKey.json()).toEqual({
      error: {
        message: expect.stringContaining('API key'),
        type: 'invalid_request_error',
        param: null,
        code: 'invalid_api_key',
      },
    });
    const { key } = await t.issue();
    const unknown = await fetch(`${t.baseURL}/nope`, { headers: { authorization: `Bearer ${key}` } });
    expect(unknown.status).toBe(404);
    expect(((await unknown.json()) as { error: { code: string } }).error.code).toBe('unknown_url');
  });
});
