// Admits a relayed request against the key's limits and settles it afterwards, exactly once.
// Order: requests/minute, then a concurrency slot, then a token reservation sized from the prompt
// plus the largest completion the request may produce. Settling replaces the reservation with what
// the upstream reported (or what we counted) and frees the slot.
import type { TierConfig } from '../config/schema.js';
import { budgetDay, nextReset } from '../domain/budget-day.js';
import { RateLimitError } from '../domain/errors.js';
import type { ConcurrencyLimiter, RateLimiter, TokenBudget } from '../domain/ports.js';
import type { KeyRecord } from '../domain/types.js';

export interface LimitDeps {
  rate: RateLimiter;
  concurrency: ConcurrencyLimiter;
  budget: TokenBudget;
  timeZone: string;
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
  const { key, tier, weight } = input;
  const now = deps.now();
  const keySubject = `key:${key.id}`;

  const rate = await deps.rate.consume(keySubject, tier.rpm);
  const headers: Record<string, string> = {
    'x-ratelimit-limit-requests': String(rate.limit),
    'x-ratelimit-remaining-requests': String(rate.remaining),
    'x-ratelimit-reset-requests': formatReset(rate.resetMs),
  };
  if (!rate.allowed) {
    throw new RateLimitError(
      `Rate limit reached: ${tier.rpm} requests per minute for this key. Try again in ${formatReset(rate.resetMs)}.`,
      'requests',
      rate.resetMs / 1000,
      headers,
    );
  }

  const slot = await deps.concurrency.acquire(keySubject, input.requestId, tier.maxConcurrent, deps.leaseTtlMs);
  if (!slot.ok) {
    throw new RateLimitError(
      `Too many concurrent requests: this key may have ${tier.maxConcurrent} in flight.`,
      'concurrency',
      1,
      headers,
    );
  }

  try {
    const day = budgetDay(now, deps.timeZone);
    const resetMs = nextReset(now, deps.timeZone).getTime() - now.getTime();
    const choices = Math.max(1, input.choices);
    const cap = Math.min(input.requestedMaxTokens ?? tier.maxTokens, tier.maxTokens);
    const min = Math.ceil(weight * (input.promptTokens + (input.completions ? choices : 0)));
    const max = Math.ceil(weight * (input.promptTokens + (input.completions ? cap * choices : 0)));
    const r = await deps.budget.reserve({
      subject: budgetSubject(key),
      day,
      requestId: input.requestId,
      min,
      max,
      limit: tier.tokensPerDay,
    });
    headers['x-ratelimit-limit-tokens'] = String(r.limit);
    headers['x-ratelimit-remaining-tokens'] = String(Math.max(0, r.limit - r.used));
    headers['x-ratelimit-reset-tokens'] = formatReset(resetMs);
    if (!r.ok) {
      throw new RateLimitError(
        `Daily token budget exhausted: ${r.used} of ${r.limit} tokens used today and this request needs at least ${min}. ` +
          `The budget resets in ${formatReset(resetMs)}.`,
        'tokens',
        resetMs / 1000,
        headers,
      );
    }
    const maxCompletionTokens = input.completions
      ? Math.max(1, Math.min(cap, Math.floor((r.granted / weight - input.promptTokens) / choices)))
      : 0;
    return { requestId: input.requestId, key, day, weight, maxCompletionTokens, headers, settled: false };
  } catch (err) {
    await deps.concurrency.release(keySubject, input.requestId);
    throw err;
  }
}

/** Charges what the request actually used and frees its slot. Safe to call more than once. */
export async function settle(
  deps: LimitDeps,
  adm: Admission,
  used: { promptTokens: number; completionTokens: number },
): Promise<number> {
  if (adm.settled) return 0;
  adm.settled = true;
  const actual = Math.ceil(adm.weight * (used.promptTokens + used.completionTokens));
  try {
    await deps.budget.settle({ subject: budgetSubject(adm.key), day: adm.day, requestId: adm.requestId, actual });
  } finally {
    await deps.concurrency.release(`key:${adm.key.id}`, adm.requestId);
  }
  return actual;
}
