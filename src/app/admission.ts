// Admits a relayed request against the key's limits in one step once its body is known, and settles
// it afterwards once. `admit` asks for a request/minute point, a concurrency slot and a token
// reservation sized as an upper bound of what the request can be billed (prompt estimate plus the
// largest completion it may produce), all in the same tick: one round trip, one batched script call
// on Redis. Before the body is read, the local gate (local-gate.ts) refuses what these would refuse
// anyway, so a key over its limits costs no parsing and no token estimate.
// A request refused by one limit still spends its request/minute point (as a refused request does
// at OpenAI), and gives back whatever else it took. Settling replaces the reservation with what the
// upstream reported and frees the slot. With an operator cost cap, `admit` also reserves on each cap
// ledger the model counts against, and `settle` settles them all.
import type { TierConfig } from '../config/schema.js';
import type { BudgetCalendar } from '../domain/budget-day.js';
import {
  CAP_PREFIX,
  type CapRate,
  capCost,
  capLimit,
  completionAllowance,
  RelayCapacityError,
} from '../domain/cost-cap.js';
import { RateLimitError, ServiceUnavailableError } from '../domain/errors.js';
import type {
  BudgetReservation,
  ConcurrencyLimiter,
  RateDecision,
  RateLimiter,
  Store,
  TokenBudget,
} from '../domain/ports.js';
import type { KeyRecord } from '../domain/types.js';
import { type CostCapPlan, capHistory } from './cost-cap.js';
import type { GatePass } from './local-gate.js';
import { chargedBeforeDeletion } from './users.js';

export interface LimitDeps {
  rate: RateLimiter;
  concurrency: ConcurrencyLimiter;
  budget: TokenBudget;
  calendar: BudgetCalendar;
  now: () => Date;
  /** A concurrency lease outlives a crashed process by at most this long. */
  leaseTtlMs: number;
  /** The operator cost cap, when one is configured. */
  costCap?: CostCapPlan | null;
}

/** A request that passed the request/minute and concurrency checks and holds a slot. */
export interface Ticket {
  readonly requestId: string;
  readonly key: KeyRecord;
  readonly tier: TierConfig;
  /** Frees the slot. Idempotent, never throws. */
  release(): Promise<void>;
}

export interface ReserveInput {
  /** Public model name: selects its price and primary upstream for the cost cap. */
  model: string;
  /** Budget tokens per model token. */
  weight: number;
  /** Upper bound on the prompt tokens. */
  promptTokens: number;
  /**
   * The most any provider may count for this prompt (its tokenizer may not be ours): at least
   * `promptTokens`, typically the request's size in bytes. Bills above it are absurd. Default: `promptTokens`.
   */
  promptCeiling?: number;
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
  /** The most this request can be billed for, in model tokens: see `billable`. */
  readonly bound: Used;
  /** OpenAI-style x-ratelimit-* headers, of requests and of tokens. */
  readonly headers: Record<string, string>;
  /** Cost cap ledgers this request reserved on, settled with the member's budget. */
  readonly caps: readonly CapRate[];
  settled: boolean;
}

const NO_CAPS: readonly CapRate[] = [];

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
  store: Pick<Store, 'dailyUsage' | 'listAudit' | 'modelTotals'>,
  costCap?: CostCapPlan | null,
): (subject: string, day: string) => Promise<number> {
  // Cap ledgers are rebuilt from the day's usage of everyone. Bound: usage of members who deleted
  // their data that day is no longer in the store, so it is not counted again.
  const capSpent = costCap ? capHistory(store, costCap) : null;
  return async (subject, day) => {
    const cap = subject.startsWith(CAP_PREFIX) ? capSpent : null;
    if (!cap && !subject.startsWith(USER_SUBJECT)) return 0;
    try {
      if (cap) return await cap(subject, day);
      const discordId = subject.slice(USER_SUBJECT.length);
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

/** OpenAI-style x-ratelimit-*-requests headers. */
function requestHeaders(r: RateDecision): Record<string, string> {
  return {
    'x-ratelimit-limit-requests': String(r.limit),
    'x-ratelimit-remaining-requests': String(r.remaining),
    'x-ratelimit-reset-requests': formatReset(r.resetMs),
  };
}

/** The refusal of a request past the key's requests per minute. */
export function requestsRefusal(rpm: number, r: RateDecision): RateLimitError {
  return new RateLimitError(
    `Rate limit reached: ${rpm} requests per minute for this key. Try again in ${formatReset(r.resetMs)}.`,
    'requests',
    r.resetMs / 1000,
    requestHeaders(r),
  );
}

/** The refusal of a request past the key's requests in flight. */
export function inFlightRefusal(max: number, headers: Record<string, string>): RateLimitError {
  return new RateLimitError(
    `Too many concurrent requests: this key may have ${max} in flight.`,
    'concurrency',
    1,
    headers,
  );
}

/** Who asks for admission. */
export interface AdmitRequest {
  requestId: string;
  key: KeyRecord;
  tier: TierConfig;
  /** The request's place at the local gate: told the rate answer, and left when the slot is freed. */
  pass?: GatePass;
}

/**
 * Takes a request/minute point, a concurrency slot and the request's largest possible cost, all
 * sent in the same tick. A refusal gives back whatever was taken (the point stays spent).
 */
export async function admit(deps: LimitDeps, req: AdmitRequest, input: ReserveInput): Promise<Admission> {
  const { requestId, key, tier, pass } = req;
  const { weight, promptTokens, completions } = input;
  const now = deps.now();
  const { day, resetAt } = deps.calendar.at(now);
  const resetMs = resetAt - now.getTime();
  const cap = Math.min(input.requestedMaxTokens ?? tier.maxTokens, tier.maxTokens);
  const min = Math.ceil(weight * (promptTokens + completions));
  const max = Math.ceil(weight * (promptTokens + cap * completions));
  const caps = deps.costCap?.ratesFor(input.model) ?? NO_CAPS;
  const keySubject = `key:${key.id}`;
  const subject = budgetSubject(key.discordId);
  const reservations = [deps.budget.reserve({ subject, day, requestId, min, max, limit: tier.tokensPerDay })];
  for (const capRate of caps) {
    reservations.push(
      deps.budget.reserve({
        subject: capRate.ledger.subject,
        day,
        requestId,
        min: capCost(capRate, weight, promptTokens, completions),
        max: capCost(capRate, weight, promptTokens, cap * completions),
        limit: capLimit(capRate.ledger, tier.capShare),
      }),
    );
  }
  const [rate, slot, booked] = await Promise.allSettled([
    deps.rate.consume(keySubject, tier.rpm),
    deps.concurrency.acquire(keySubject, requestId, tier.maxConcurrent, deps.leaseTtlMs),
    Promise.allSettled(reservations),
  ]);
  const results = (booked as PromiseFulfilledResult<PromiseSettledResult<BudgetReservation>[]>).value;

  const r = rate.status === 'fulfilled' ? rate.value : null;
  if (r) pass?.noteRate(r, now.getTime());
  let released = !(slot.status === 'fulfilled' && slot.value.ok);
  const release = async () => {
    pass?.leave();
    if (released) return;
    released = true;
    await deps.concurrency.release(keySubject, requestId).catch(() => {
      // The failure policy queues releases it could not deliver; the lease TTL bounds the rest.
    });
  };
  const b = results[0]!.status === 'fulfilled' ? results[0]!.value : null;
  const headers: Record<string, string> = r ? requestHeaders(r) : {};
  if (b) {
    headers['x-ratelimit-limit-tokens'] = String(b.limit);
    headers['x-ratelimit-remaining-tokens'] = String(Math.max(0, b.limit - b.used));
    headers['x-ratelimit-reset-tokens'] = formatReset(resetMs);
  }

  const refusedAt = results.findIndex((x) => x.status === 'rejected' || !x.value.ok);
  if (!r?.allowed || released || refusedAt !== -1) {
    // Give back whatever was taken: settling at 0 removes a held reservation.
    const undo = results.flatMap((x, i) =>
      x.status === 'fulfilled' && x.value.ok
        ? [deps.budget.settle({ subject: i ? caps[i - 1]!.ledger.subject : subject, day, requestId, actual: 0 })]
        : [],
    );
    await Promise.allSettled([...undo, release()]);
    const failed = [rate, slot, ...results].find((x) => x.status === 'rejected');
    if (failed) throw failed.reason;
    if (!r!.allowed) throw requestsRefusal(tier.rpm, r!);
    if (slot.status === 'fulfilled' && !slot.value.ok) throw inFlightRefusal(tier.maxConcurrent, requestHeaders(r!));
    if (!b!.ok) {
      throw new RateLimitError(
        `Daily token budget exhausted: ${b!.used} of ${b!.limit} tokens used today and this request needs at least ${min}. ` +
          `The budget resets in ${formatReset(resetMs)}.`,
        'tokens',
        resetMs / 1000,
        headers,
      );
    }
    throw capacityError(key.tier, input.model, caps[refusedAt - 1]!, resetAt, resetMs, requestHeaders(r!));
  }
  let allowance = completions ? Math.floor((b!.granted / weight - promptTokens) / completions) : 0;
  for (let i = 0; completions && i < caps.length; i++) {
    const granted = (results[i + 1] as PromiseFulfilledResult<BudgetReservation>).value.granted;
    allowance = Math.min(allowance, completionAllowance(caps[i]!, weight, granted, promptTokens, completions));
  }
  const maxCompletionTokens = completions ? Math.max(1, Math.min(cap, allowance)) : 0;
  const bound = {
    promptTokens: Math.max(promptTokens, input.promptCeiling ?? 0),
    completionTokens: maxCompletionTokens * completions,
  };
  const ticket: Ticket = { requestId, key, tier, release };
  return { ticket, day, weight, maxCompletionTokens, bound, headers, caps, settled: false };
}

/** Names the tier and, for an upstream's cap, the model; never how much was spent. */
function capacityError(
  tierName: string,
  model: string | undefined,
  rate: CapRate,
  resetAt: number,
  resetMs: number,
  headers: Record<string, string>,
): RelayCapacityError {
  const onModel = rate.ledger.scope === 'relay' || !model ? '' : ` on model "${model}"`;
  return new RelayCapacityError(
    `The relay's daily capacity for the "${tierName}" tier${onModel} is used up. ` +
      `It resets in ${formatReset(resetMs)} (${new Date(resetAt).toISOString()}).`,
    resetMs / 1000,
    headers,
  );
}

export interface Used {
  promptTokens: number;
  completionTokens: number;
}

/**
 * What a request is billed for: what it used, but never more than its bound: the prompt's ceiling,
 * and the completion cap sent upstream times the completions. A count above it is a provider's
 * miscount (or delivered text counted as bytes), and must not exhaust a member's day.
 */
export function billable(adm: Admission, used: Used): Used {
  return {
    promptTokens: Math.min(used.promptTokens, adm.bound.promptTokens),
    completionTokens: Math.min(used.completionTokens, adm.bound.completionTokens),
  };
}

/** Budget tokens a billed request costs: model tokens times the model's weight, rounded up. */
export function charge(adm: Admission, billed: Used): number {
  return Math.ceil(adm.weight * (billed.promptTokens + billed.completionTokens));
}

/** Charges what the request is billed for (`billable`) and frees its slot. Safe to call more than once. */
export async function settle(deps: LimitDeps, adm: Admission, billed: Used): Promise<number> {
  if (adm.settled) return 0;
  adm.settled = true;
  const actual = charge(adm, billed);
  const { ticket, day } = adm;
  const { requestId } = ticket;
  const results = await Promise.allSettled([
    deps.budget.settle({ subject: budgetSubject(ticket.key.discordId), day, requestId, actual }),
    ...adm.caps.map((rate) =>
      deps.budget.settle({
        subject: rate.ledger.subject,
        day,
        requestId,
        actual: capCost(rate, adm.weight, billed.promptTokens, billed.completionTokens),
      }),
    ),
    ticket.release(),
  ]);
  const failed = results.find((r) => r.status === 'rejected');
  if (failed) throw failed.reason;
  return actual;
}
