// Admits a relayed request against the key's limits in two steps, and settles it afterwards once.
// 1. `enter`, before the body is even read: a request/minute point and a concurrency slot. These
//    are cheap, so nothing costly (parsing, token estimates) runs for a key that is over its limits.
// 2. `reserve`, once the body is known: a token reservation sized as an upper bound of what the
//    request can be billed (prompt estimate plus the largest completion it may produce).
// A request refused by one limit still spends its request/minute point (as a refused request does
// at OpenAI). Settling replaces the reservation with what the upstream reported and frees the slot.
import type { TierConfig } from '../config/schema.js';
import type { BudgetCalendar } from '../domain/budget-day.js';
import { RateLimitError, ServiceUnavailableError } from '../domain/errors.js';
import type { ConcurrencyLimiter, RateLimiter, Store, TokenBudget } from '../domain/ports.js';
import type { KeyRecord } from '../domain/types.js';
import { chargedBeforeDeletion } from './users.js';

export interface LimitDeps {
  rate: RateLimiter;
  concurrency: ConcurrencyLimiter;
  budget: TokenBudget;
  calendar: BudgetCalendar;
  now: () => Date;
  /** A concurrency lease outlives a crashed process by at most this long. */
  leaseTtlMs: number;
}

/** A request that passed the request/minute and concurrency checks and holds a slot. */
export interface Ticket {
  readonly requestId: string;
  readonly key: KeyRecord;
  readonly tier: TierConfig;
  /** OpenAI-style x-ratelimit-*-requests headers. */
  readonly headers: Record<string, string>;
  /** Frees the slot. Idempotent, never throws. */
  release(): Promise<void>;
}

export interface ReserveInput {
  /** Budget tokens per model token. */
  weight: number;
  /** Upper bound on the prompt tokens. */
  promptTokens: number;
  /** `max_tokens` the client asked for, or null. Ignored when `completions` is 0. */
  requestedMaxTokens: number | null;
  /** Completions the upstream generates: choices × prompts (0 for embeddings). */
  completions: number;
}

export interface Admission {
  readonly ticket: Ticket;
  readonly day: string;
  readonly weight: number;
  /** Largest `max_tokens` to send upstream so the reservation is an upper bound. */
  readonly maxCompletionTokens: number;
  /** OpenAI-style x-ratelimit-*-tokens headers. */
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

const USER_SUBJECT = 'user:';

/** The budget follows the Discord user, so rotating a key does not refill it. */
export function budgetSubject(discordId: string): string {
  return `${USER_SUBJECT}${discordId}`;
}

/** Deletions of one user that a day's rebuild looks through (a user's own audit entries are few). */
const DELETION_LOOKBACK = 50;

/**
 * What a budget subject was charged on a day according to the store: its daily usage, plus what it
 * was charged before deleting its data that day. How a limiter that lost its state (Redis restarted
 * empty, a process restarted) rebuilds the day.
 */
export function budgetHistory(
  store: Pick<Store, 'dailyUsage' | 'listAudit'>,
): (subject: string, day: string) => Promise<number> {
  return async (subject, day) => {
    if (!subject.startsWith(USER_SUBJECT)) return 0;
    const discordId = subject.slice(USER_SUBJECT.length);
    try {
      const [rows, audit] = await Promise.all([
        store.dailyUsage({ discordId, fromDay: day, toDay: day }),
        store.listAudit({ target: discordId, limit: DELETION_LOOKBACK }),
      ]);
      return rows.reduce((sum, r) => sum + r.chargedTokens, 0) + chargedBeforeDeletion(audit, day);
    } catch (err) {
      // Admitting against a ledger that forgot the day would let the budget be spent again.
      throw new ServiceUnavailableError(
        "Today's usage cannot be read right now. Retry shortly.",
        'store_unavailable',
        err,
      );
    }
  };
}

/** Step 1: a request/minute point and a concurrency slot, checked at once. */
export async function enter(
  deps: LimitDeps,
  input: { requestId: string; key: KeyRecord; tier: TierConfig },
): Promise<Ticket> {
  const { requestId, key, tier } = input;
  const subject = `key:${key.id}`;
  const [rate, slot] = await Promise.allSettled([
    deps.rate.consume(subject, tier.rpm),
    deps.concurrency.acquire(subject, requestId, tier.maxConcurrent, deps.leaseTtlMs),
  ]);
  const tookSlot = slot.status === 'fulfilled' && slot.value.ok;
  let released = !tookSlot;
  const release = async () => {
    if (released) return;
    released = true;
    await deps.concurrency.release(subject, requestId).catch(() => {
      // The failure policy queues releases it could not deliver; the lease TTL bounds the rest.
    });
  };
  if (rate.status === 'rejected' || slot.status === 'rejected') {
    await release();
    throw rate.status === 'rejected' ? rate.reason : (slot as PromiseRejectedResult).reason;
  }
  const r = rate.value;
  const headers = {
    'x-ratelimit-limit-requests': String(r.limit),
    'x-ratelimit-remaining-requests': String(r.remaining),
    'x-ratelimit-reset-requests': formatReset(r.resetMs),
  };
  if (!r.allowed) {
    await release();
    throw new RateLimitError(
      `Rate limit reached: ${tier.rpm} requests per minute for this key. Try again in ${formatReset(r.resetMs)}.`,
      'requests',
      r.resetMs / 1000,
      headers,
    );
  }
  if (!tookSlot) {
    throw new RateLimitError(
      `Too many concurrent requests: this key may have ${tier.maxConcurrent} in flight.`,
      'concurrency',
      1,
      headers,
    );
  }
  return { requestId, key, tier, headers, release };
}

/** Step 2: reserves the request's largest possible cost. A refusal frees the ticket's slot. */
export async function reserve(deps: LimitDeps, ticket: Ticket, input: ReserveInput): Promise<Admission> {
  const { tier } = ticket;
  const { weight, promptTokens, completions } = input;
  const now = deps.now();
  const { day, resetAt } = deps.calendar.at(now);
  const resetMs = resetAt - now.getTime();
  const cap = Math.min(input.requestedMaxTokens ?? tier.maxTokens, tier.maxTokens);
  const min = Math.ceil(weight * (promptTokens + completions));
  const max = Math.ceil(weight * (promptTokens + cap * completions));
  let b: Awaited<ReturnType<TokenBudget['reserve']>>;
  try {
    b = await deps.budget.reserve({
      subject: budgetSubject(ticket.key.discordId),
      day,
      requestId: ticket.requestId,
      min,
      max,
      limit: tier.tokensPerDay,
    });
  } catch (err) {
    await ticket.release();
    throw err;
  }
  const headers = {
    'x-ratelimit-limit-tokens': String(b.limit),
    'x-ratelimit-remaining-tokens': String(Math.max(0, b.limit - b.used)),
    'x-ratelimit-reset-tokens': formatReset(resetMs),
  };
  if (!b.ok) {
    await ticket.release();
    throw new RateLimitError(
      `Daily token budget exhausted: ${b.used} of ${b.limit} tokens used today and this request needs at least ${min}. ` +
        `The budget resets in ${formatReset(resetMs)}.`,
      'tokens',
      resetMs / 1000,
      { ...ticket.headers, ...headers },
    );
  }
  const maxCompletionTokens = completions
    ? Math.max(1, Math.min(cap, Math.floor((b.granted / weight - promptTokens) / completions)))
    : 0;
  return { ticket, day, weight, maxCompletionTokens, headers, settled: false };
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
  const { ticket } = adm;
  const [settled] = await Promise.allSettled([
    deps.budget.settle({
      subject: budgetSubject(ticket.key.discordId),
      day: adm.day,
      requestId: ticket.requestId,
      actual,
    }),
    ticket.release(),
  ]);
  if (settled.status === 'rejected') throw settled.reason;
  return actual;
}
