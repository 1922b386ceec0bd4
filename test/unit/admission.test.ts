// Admission and settlement (src/app/admission.ts) on the real in-process limit adapters. Budget use
// is observed through the x-ratelimit-*-tokens headers of a zero-token probe admission, the way a
// client sees it, not by peeking at adapter internals.
import { describe, expect, it } from 'vitest';
import { MemoryConcurrencyLimiter, MemoryRateLimiter, MemoryTokenBudget } from '../../src/adapters/memory/limits.js';
import { type Admission, admit as admitRequest, formatReset, type LimitDeps, settle } from '../../src/app/admission.js';
import type { TierConfig } from '../../src/config/schema.js';
import { BudgetCalendar } from '../../src/domain/budget-day.js';
import { RateLimitError } from '../../src/domain/errors.js';
import type { KeyRecord } from '../../src/domain/types.js';

const BASE_TIER: TierConfig = { rpm: 1000, maxConcurrent: 10, tokensPerDay: 100_000, models: ['*'], maxTokens: 4096 };

let seq = 0;

function makeDeps(
  clock = { now: new Date('2026-05-10T12:00:00Z') },
  timeZone = 'UTC',
): LimitDeps & { clock: { now: Date } } {
  return {
    rate: new MemoryRateLimiter(),
    concurrency: new MemoryConcurrencyLimiter(),
    budget: new MemoryTokenBudget(),
    calendar: new BudgetCalendar(timeZone),
    now: () => clock.now,
    leaseTtlMs: 60_000,
    clock,
  };
}

function makeKey(discordId = `1000000000000000${++seq}`): KeyRecord {
  return {
    id: `key_test${++seq}`,
    hash: `hash${seq}`,
    prefix: 'gg_test12',
    discordId,
    tier: 'free',
    status: 'active',
    statusReason: null,
    createdAt: new Date('2026-01-01T00:00:00Z'),
    expiresAt: null,
    revokedAt: null,
  };
}

interface AdmitInput {
  requestId: string;
  key: KeyRecord;
  tier: TierConfig;
  weight: number;
  promptTokens: number;
  requestedMaxTokens: number | null;
  choices: number;
  /** False for embeddings. */
  completions: boolean;
}

/** Admission as the relay asks for it. */
function admit(deps: LimitDeps, i: AdmitInput): Promise<Admission> {
  return admitRequest(deps, i, {
    model: 'gpt-4o-mini',
    weight: i.weight,
    promptTokens: i.promptTokens,
    requestedMaxTokens: i.requestedMaxTokens,
    completions: i.completions ? i.choices : 0,
  });
}

function input(key: KeyRecord, tier: TierConfig, over: Partial<AdmitInput> = {}): AdmitInput {
  return {
    requestId: `req_${++seq}`,
    key,
    tier,
    weight: 1,
    promptTokens: 10,
    requestedMaxTokens: 20,
    choices: 1,
    completions: true,
    ...over,
  };
}

async function refusal(p: Promise<unknown>): Promise<RateLimitError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof RateLimitError) return err;
    throw err;
  }
  throw new Error('expected a RateLimitError');
}

/** Tokens used + reserved today for the key's owner, seen through a zero-token admission. */
async function usedToday(deps: LimitDeps, key: KeyRecord, tier: TierConfig): Promise<number> {
  const probe = await admit(deps, input(key, tier, { promptTokens: 0, completions: false }));
  await settle(deps, probe, { promptTokens: 0, completionTokens: 0 });
  return tier.tokensPerDay - Number(probe.headers['x-ratelimit-remaining-tokens']);
}

describe('formatReset', () => {
  it('writes durations the way OpenAI does, rounding up to whole seconds', () => {
    expect(formatReset(0)).toBe('0s');
    expect(formatReset(-5)).toBe('0s');
    expect(formatReset(1)).toBe('1s');
    expect(formatReset(1000)).toBe('1s');
    expect(formatReset(1001)).toBe('2s');
    expect(formatReset(59_000)).toBe('59s');
    expect(formatReset(60_000)).toBe('1m0s');
    expect(formatReset(61_500)).toBe('1m2s');
    expect(formatReset(3_600_000)).toBe('1h0m0s');
    expect(formatReset(3_723_000)).toBe('1h2m3s');
    expect(formatReset(86_400_000)).toBe('24h0m0s');
  });
});

describe('admit', () => {
  it('answers with OpenAI-style rate limit headers', async () => {
    const deps = makeDeps();
    const tier = { ...BASE_TIER, rpm: 5, tokensPerDay: 1000 };
    const adm = await admit(deps, input(makeKey(), tier));
    expect(adm.headers).toMatchObject({
      'x-ratelimit-limit-requests': '5',
      'x-ratelimit-remaining-requests': '4',
      'x-ratelimit-limit-tokens': '1000',
      'x-ratelimit-remaining-tokens': String(1000 - 30),
      'x-ratelimit-reset-tokens': '12h0m0s', // noon UTC to midnight
    });
    expect(adm.headers['x-ratelimit-reset-requests']).toMatch(/^(\d+s|1m0s)$/);
  });

  it('refuses past the requests per minute: limit "requests", 429 with retry-after', async () => {
    const deps = makeDeps();
    const tier = { ...BASE_TIER, rpm: 2 };
    const key = makeKey();
    for (let i = 0; i < 2; i++)
      await settle(deps, await admit(deps, input(key, tier)), { promptTokens: 1, completionTokens: 1 });
    const err = await refusal(admit(deps, input(key, tier)));
    expect(err.limit).toBe('requests');
    expect(err.status).toBe(429);
    expect(err.code).toBe('rate_limit_requests');
    expect(err.type).toBe('rate_limit_error');
    const retryAfter = Number(err.headers['retry-after']);
    expect(Number.isInteger(retryAfter)).toBe(true);
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(60);
    expect(err.headers['x-ratelimit-remaining-requests']).toBe('0');
    // Another key of the same user has its own per-minute window.
    await expect(admit(deps, input(makeKey(key.discordId), tier))).resolves.toBeDefined();
  });

  it('a requests-per-minute refusal holds no concurrency slot and reserves no tokens', async () => {
    const deps = makeDeps();
    const key = makeKey();
    const tier = { ...BASE_TIER, rpm: 1, maxConcurrent: 1 };
    const first = await admit(deps, input(key, tier));
    await settle(deps, first, { promptTokens: 10, completionTokens: 5 });
    await refusal(admit(deps, input(key, tier)));
    // A fresh minute window (new rate limiter) over the same slots and budget: the single slot is free.
    const fresh = { ...deps, rate: new MemoryRateLimiter() };
    const probeTier = { ...tier, rpm: 10 };
    expect(await usedToday(fresh, key, probeTier)).toBe(15);
    await expect(admit(fresh, input(key, probeTier))).resolves.toBeDefined();
  });

  it('refuses past the concurrency cap without releasing the slots it did not take', async () => {
    const deps = makeDeps();
    const key = makeKey();
    const tier = { ...BASE_TIER, maxConcurrent: 2 };
    const a = await admit(deps, input(key, tier));
    const b = await admit(deps, input(key, tier));
    const c = await refusal(admit(deps, input(key, tier)));
    expect(c.limit).toBe('concurrency');
    expect(c.code).toBe('rate_limit_concurrency');
    expect(c.headers['retry-after']).toBe('1');
    // The refusal released nothing: both slots are still held.
    expect((await refusal(admit(deps, input(key, tier)))).limit).toBe('concurrency');
    // Finishing one request frees exactly one slot.
    await settle(deps, a, { promptTokens: 10, completionTokens: 1 });
    const d = await admit(deps, input(key, tier));
    expect((await refusal(admit(deps, input(key, tier)))).limit).toBe('concurrency');
    await settle(deps, b, { promptTokens: 10, completionTokens: 1 });
    await settle(deps, d, { promptTokens: 10, completionTokens: 1 });
  });

  it('a concurrency refusal reserves no tokens', async () => {
    const deps = makeDeps();
    const key = makeKey();
    const tier = { ...BASE_TIER, maxConcurrent: 1 };
    const held = await admit(deps, input(key, tier, { promptTokens: 100, requestedMaxTokens: 100 }));
    await refusal(admit(deps, input(key, tier, { promptTokens: 5000 })));
    await settle(deps, held, { promptTokens: 100, completionTokens: 50 });
    expect(await usedToday(deps, key, tier)).toBe(150);
  });

  it('refuses when the daily budget cannot fit the request, and releases the concurrency slot', async () => {
    const deps = makeDeps({ now: new Date('2026-05-10T23:00:00Z') });
    const key = makeKey();
    const tier = { ...BASE_TIER, maxConcurrent: 1, tokensPerDay: 100 };
    const err = await refusal(admit(deps, input(key, tier, { promptTokens: 200 })));
    expect(err.limit).toBe('tokens');
    expect(err.status).toBe(429);
    expect(err.type).toBe('insufficient_quota');
    expect(err.code).toBe('daily_token_budget_exceeded');
    expect(err.headers['retry-after']).toBe('3600'); // an hour to midnight UTC
    expect(err.headers['x-ratelimit-reset-tokens']).toBe('1h0m0s');
    expect(err.message).toContain('100');
    // The only slot is free again: a request that fits is admitted.
    const ok = await admit(deps, input(key, tier, { promptTokens: 10, requestedMaxTokens: 5 }));
    expect(ok.maxCompletionTokens).toBe(5);
  });

  it('clamps max_tokens to the tier cap', async () => {
    const deps = makeDeps();
    const key = makeKey();
    const tier = { ...BASE_TIER, maxTokens: 100 };
    expect((await admit(deps, input(key, tier, { requestedMaxTokens: 1000 }))).maxCompletionTokens).toBe(100);
    expect((await admit(deps, input(key, tier, { requestedMaxTokens: null }))).maxCompletionTokens).toBe(100);
    expect((await admit(deps, input(key, tier, { requestedMaxTokens: 50 }))).maxCompletionTokens).toBe(50);
  });

  it('clamps max_tokens to what is left of the daily budget, shared among choices', async () => {
    const deps = makeDeps();
    const key = makeKey();
    const tier = { ...BASE_TIER, tokensPerDay: 1000, maxTokens: 500 };
    const big = await admit(deps, input(key, tier, { promptTokens: 800, requestedMaxTokens: 100 }));
    await settle(deps, big, { promptTokens: 800, completionTokens: 100 });
    // 100 tokens left: a 40-token prompt leaves room for 60 completion tokens.
    const one = await admit(deps, input(key, tier, { promptTokens: 40, requestedMaxTokens: null }));
    expect(one.maxCompletionTokens).toBe(60);
    expect(one.headers['x-ratelimit-remaining-tokens']).toBe('0');
    await settle(deps, one, { promptTokens: 40, completionTokens: 0 });
    // 60 left: with n=2, a 20-token prompt leaves 40, i.e. 20 per choice.
    const two = await admit(deps, input(key, tier, { promptTokens: 20, requestedMaxTokens: null, choices: 2 }));
    expect(two.maxCompletionTokens).toBe(20);
  });

  it('multiplies reservation and charge by the model weight', async () => {
    const deps = makeDeps();
    const key = makeKey();
    const tier = { ...BASE_TIER, tokensPerDay: 10_000 };
    const adm = await admit(deps, input(key, tier, { weight: 15, promptTokens: 10, requestedMaxTokens: 20 }));
    // Reserved: 15 * (10 + 20).
    expect(adm.headers['x-ratelimit-remaining-tokens']).toBe(String(10_000 - 450));
    expect(adm.maxCompletionTokens).toBe(20);
    const charged = await settle(deps, adm, { promptTokens: 10, completionTokens: 5 });
    expect(charged).toBe(225);
    expect(await usedToday(deps, key, tier)).toBe(225);
  });

  it('rounds fractional weighted charges up to whole tokens', async () => {
    const deps = makeDeps();
    const key = makeKey();
    const adm = await admit(deps, input(key, BASE_TIER, { weight: 0.3, promptTokens: 1, requestedMaxTokens: 1 }));
    expect(await settle(deps, adm, { promptTokens: 1, completionTokens: 1 })).toBe(1);
    expect(await usedToday(deps, key, BASE_TIER)).toBe(1);
  });

  it('embeddings reserve the prompt only and get no completion allowance', async () => {
    const deps = makeDeps();
    const key = makeKey();
    const tier = { ...BASE_TIER, tokensPerDay: 1000 };
    const adm = await admit(
      deps,
      input(key, tier, { promptTokens: 300, requestedMaxTokens: 999, completions: false, weight: 2 }),
    );
    expect(adm.maxCompletionTokens).toBe(0);
    expect(adm.headers['x-ratelimit-remaining-tokens']).toBe(String(1000 - 600));
  });

  it('charges the budget of the Discord user: two keys of one user share it, another user does not', async () => {
    const deps = makeDeps();
    const tier = { ...BASE_TIER, tokensPerDay: 100 };
    const first = makeKey();
    const second = makeKey(first.discordId);
    const stranger = makeKey();
    const a = await admit(deps, input(first, tier, { promptTokens: 80, requestedMaxTokens: 10 }));
    await settle(deps, a, { promptTokens: 80, completionTokens: 10 });
    const err = await refusal(admit(deps, input(second, tier, { promptTokens: 50 })));
    expect(err.limit).toBe('tokens');
    expect(await usedToday(deps, second, tier)).toBe(90);
    await expect(admit(deps, input(stranger, tier, { promptTokens: 50 }))).resolves.toBeDefined();
  });

  it('starts a fresh budget on the next day in the configured zone', async () => {
    const clock = { now: new Date('2026-05-10T14:59:00Z') };
    const deps = makeDeps(clock, 'Asia/Tokyo');
    const key = makeKey();
    const tier = { ...BASE_TIER, tokensPerDay: 100 };
    const a = await admit(deps, input(key, tier, { promptTokens: 90, requestedMaxTokens: 10 }));
    expect(a.day).toBe('2026-05-10');
    expect(a.headers['x-ratelimit-reset-tokens']).toBe('1m0s');
    await settle(deps, a, { promptTokens: 90, completionTokens: 10 });
    await refusal(admit(deps, input(key, tier, { promptTokens: 10 })));
    clock.now = new Date('2026-05-10T15:00:00Z'); // midnight in Tokyo
    const b = await admit(deps, input(key, tier, { promptTokens: 10, requestedMaxTokens: 10 }));
    expect(b.day).toBe('2026-05-11');
  });
});

describe('settle', () => {
  it('replaces the reservation with the actual use and frees the slot', async () => {
    const deps = makeDeps();
    const key = makeKey();
    const tier = { ...BASE_TIER, maxConcurrent: 1, tokensPerDay: 1000 };
    const adm = await admit(deps, input(key, tier, { promptTokens: 100, requestedMaxTokens: 400 }));
    expect(adm.headers['x-ratelimit-remaining-tokens']).toBe('500');
    expect(await settle(deps, adm, { promptTokens: 100, completionTokens: 7 })).toBe(107);
    expect(adm.settled).toBe(true);
    expect(await usedToday(deps, key, tier)).toBe(107);
  });

  it('charges once when called twice, and the second call frees no other slot', async () => {
    const deps = makeDeps();
    const key = makeKey();
    const tier = { ...BASE_TIER, maxConcurrent: 2, tokensPerDay: 1000 };
    const a = await admit(deps, input(key, tier));
    const b = await admit(deps, input(key, tier));
    expect(await settle(deps, a, { promptTokens: 10, completionTokens: 10 })).toBe(20);
    expect(await settle(deps, a, { promptTokens: 10, completionTokens: 10 })).toBe(0);
    expect(await settle(deps, a, { promptTokens: 500, completionTokens: 500 })).toBe(0);
    // b still holds its slot: one more request fits, a second does not.
    const c = await admit(deps, input(key, tier));
    expect((await refusal(admit(deps, input(key, tier)))).limit).toBe('concurrency');
    await settle(deps, b, { promptTokens: 10, completionTokens: 10 });
    await settle(deps, c, { promptTokens: 10, completionTokens: 10 });
    expect(await usedToday(deps, key, tier)).toBe(60);
  });

  it('charges the day the request was admitted on, even when it finishes after midnight', async () => {
    const clock = { now: new Date('2026-05-10T23:59:30Z') };
    const deps = makeDeps(clock);
    const key = makeKey();
    const tier = { ...BASE_TIER, tokensPerDay: 1000 };
    const adm = await admit(deps, input(key, tier, { promptTokens: 100, requestedMaxTokens: 100 }));
    clock.now = new Date('2026-05-11T00:00:30Z');
    await settle(deps, adm, { promptTokens: 100, completionTokens: 50 });
    expect(await usedToday(deps, key, tier)).toBe(0);
    clock.now = new Date('2026-05-10T23:59:59Z');
    expect(await usedToday(deps, key, tier)).toBe(150);
  });
});
