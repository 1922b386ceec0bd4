// Admits a relayed request against the key's limits and settles it afterwards, exactly once.
// Admission takes a request/minute point, a concurrency slot and a token reservation sized from the
// prompt plus the largest completion the request may produce. A request refused by one limit still
// spends its request/minute point (as a refused request does at OpenAI). Settling replaces the
// reservation with what the upstream reported (or what we counted) and frees the slot.
import type { TierConfig } from '../config/schema.js';
import type { BudgetCalendar } from '../domain/budget-day.js';
import { RateLimitError } from '../domain/errors.js';
import type { BudgetReservation, ConcurrencyLimiter, RateDecision, RateLimiter, TokenBudget } from '../domain/ports.js';
import type { KeyRecord } from '../domain/types.js';

export interface LimitDeps {
  rate: RateLimiter;
  concurrency: ConcurrencyLimiter;
  budget: TokenBudget;
  calendar: BudgetCalendar;
  now: () => Date;
  /** A concurrency lease outlives a crashed process by at most this long. */
  leaseTtlMs: number;
}

export interface AdmitInput {
  requestId: string;
  key: KeyRecord;
  tier: TierConfig;
  /** Budget tokens per model token. */
  weight: number;
  promptTokens: number;
  /** `max_tokens` the client asked for, or null. Ignored when `completions` is false. */
  requestedMaxTokens: number | null;
  /** Number of choices (`n`). */
  choices: number;
  /** False for embeddings: no completion tokens. */
  completions: boolean;
}

export interface Admission {
  readonly requestId: string;
  readonly key: KeyRecord;
  readonly day: string;
  readonly weight: number;
  /** Largest `max_tokens` to send upstream so the reservation is an upper bound. */
  readonly maxCompletionTokens: number;
  /** OpenAI-style x-ratelimit-* headers for the response. */
  readonly headers: Record<string, string>;
  settled: boolean;
}

/** OpenAI writes reset times like `1s`, `6m0s`, `1h2m3s`. */
export function formatReset(ms: number): string {
  const total = Math.max(0, Math.ceil(ms / 1000));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  if (h) return `${h}h${m}m${s}s`;
  if (m) return `${m}m${s}s`;
  return `${s}s`;
}

function budgetSubject(key: KeyRecord): string {
  // The budget follows the Discord user, so rotating a key does not refill it.
  return `user:${key.discordId}`;
}

export async function admit(deps: LimitDeps, input: AdmitInput): Promise<Admission> {
  const { key, tier, weight, requestId } = input;
  const now = deps.now();
  const keySubject = `key:${key.id}`;
  const { day, resetAt } = deps.calendar.at(now);
  const resetMs = resetAt - now.getTime();
  const choices = Math.max(1, input.choices);
  const cap = Math.min(input.requestedMaxTokens ?? tier.maxTokens, tier.maxTokens);
  const min = Math.ceil(weight * (input.promptTokens + (input.completions ? choices : 0)));
  const max = Math.ceil(weight * (input.promptTokens + (input.completions ? cap * choices : 0)));

  // The three checks are independent, so they run at once (one round trip to a shared limiter store
  // instead of three); whatever one of them took is given back if another refuses.
  const [rate, slot, budget] = await Promise.allSettled([
    deps.rate.consume(keySubject, tier.rpm),
    deps.concurrency.acquire(keySubject, requestId, tier.maxConcurrent, deps.leaseTtlMs),
    deps.budget.reserve({ subject: budgetSubject(key), day, requestId, min, max, limit: tier.tokensPerDay }),
  ]);
  const tookSlot = slot.status === 'fulfilled' && slot.value.ok;
  const tookTokens = budget.status === 'fulfilled' && budget.value.ok;
  const undo = async () => {
    await Promise.allSettled([
      tookSlot ? deps.concurrency.release(keySubject, requestId) : null,
      tookTokens ? deps.budget.settle({ subject: budgetSubject(key), day, requestId, actual: 0 }) : null,
    ]);
  };
  for (const r of [rate, slot, budget]) {
    if (r.status === 'rejected') {
      await undo();
      throw r.reason;
    }
  }
  const r = (rate as PromiseFulfilledResult<RateDecision>).value;
  const b = (budget as PromiseFulfilledResult<BudgetReservation>).value;
  const headers: Record<string, string> = {
    'x-ratelimit-limit-requests': String(r.limit),
    'x-ratelimit-remaining-requests': String(r.remaining),
    'x-ratelimit-reset-requests': formatReset(r.resetMs),
    'x-ratelimit-limit-tokens': String(b.limit),
    'x-ratelimit-remaining-tokens': String(Math.max(0, b.limit - b.used)),
    'x-ratelimit-reset-tokens': formatReset(resetMs),
  };

  let refusal: RateLimitError | null = null;
  if (!r.allowed) {
    refusal = new RateLimitError(
      `Rate limit reached: ${tier.rpm} requests per minute for this key. Try again in ${formatReset(r.resetMs)}.`,
      'requests',
      r.resetMs / 1000,
      headers,
    );
  } else if (!tookSlot) {
    refusal = new RateLimitError(
      `Too many concurrent requests: this key may have ${tier.maxConcurrent} in flight.`,
      'concurrency',
      1,
      headers,
    );
  } else if (!b.ok) {
    refusal = new RateLimitError(
      `Daily token budget exhausted: ${b.used} of ${b.limit} tokens used today and this request needs at least ${min}. ` +
        `The budget resets in ${formatReset(resetMs)}.`,
      'tokens',
      resetMs / 1000,
      headers,
    );
  }
  if (refusal) {
    await undo();
    throw refusal;
  }
  const maxCompletionTokens = input.completions
    ? Math.max(1, Math.min(cap, Math.floor((b.granted / weight - input.promptTokens) / choices)))
    : 0;
  return { requestId, key, day, weight, maxCompletionTokens, headers, settled: false };
}

export interface Used {
  promptTokens: number;
  completionTokens: number;
}

/** Budget tokens a request costs: model tokens times the model's weight, rounded up. */
export function charge(adm: Admission, used: Used): number {
  return Math.ceil(adm.weight * (used.promptTokens + used.completionTokens));
}

/** Charges what the request actually used and frees its slot. Safe to call more than once. */
export async function settle(deps: LimitDeps, adm: Admission, used: Used): Promise<number> {
  if (adm.settled) return 0;
  adm.settled = true;
  const actual = charge(adm, used);
  const [settled, released] = await Promise.allSettled([
    deps.budget.settle({ subject: budgetSubject(adm.key), day: adm.day, requestId: adm.requestId, actual }),
    deps.concurrency.release(`key:${adm.key.id}`, adm.requestId),
  ]);
  for (const r of [settled, released]) if (r.status === 'rejected') throw r.reason;
  return actual;
}
