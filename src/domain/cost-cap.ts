// Operator cost cap: a daily ceiling on what the whole relay (and optionally each upstream) may
// spend, in budget tokens and/or currency. Each cap is a daily ledger on the TokenBudget port, so
// every limits backend, the failure policy and the day rebuild work for it as for member budgets.
// Tiers are shed in order: a tier may fill a ledger only up to its `capShare` of the cap.
import { AppError } from './errors.js';

export type CapUnit = 'tokens' | 'currency';

/** Provider price in the cap's currency per million model tokens. */
export interface Price {
  inputPerMTokens: number;
  outputPerMTokens: number;
}

/** One daily ledger of the cap. */
export interface CapLedger {
  /** TokenBudget subject, `cap:<unit>:relay` or `cap:<unit>:upstream:<name>`. */
  readonly subject: string;
  /** `relay` or `upstream:<name>`. */
  readonly scope: string;
  readonly unit: CapUnit;
  /** The cap in ledger units: budget tokens, or millionths of the currency (the port counts integers). */
  readonly perDay: number;
}

/** A ledger a model's requests count against, with the model's price for currency ledgers. */
export interface CapRate {
  readonly ledger: CapLedger;
  /** Set for currency ledgers. */
  readonly price: Price | null;
}

export const CAP_PREFIX = 'cap:';

/** Currency ledgers count millionths: a price per million tokens is then micro-units per token. */
export const MICRO = 1_000_000;

export function capSubject(unit: CapUnit, scope: string): string {
  return `${CAP_PREFIX}${unit}:${scope}`;
}

/**
 * Ledger units for `prompt` and `completion` model tokens. Tokens ledgers count exactly what the
 * member's budget is charged (weighted, rounded up once), so both ledgers agree to the token.
 */
export function capCost(rate: CapRate, weight: number, prompt: number, completion: number): number {
  if (!rate.price) return Math.ceil(weight * (prompt + completion));
  return Math.ceil(rate.price.inputPerMTokens * prompt + rate.price.outputPerMTokens * completion);
}

/** The part of a ledger a tier may fill: lower shares stop first, a share of 1 may use it all. */
export function capLimit(ledger: CapLedger, share: number | undefined): number {
  return Math.floor(ledger.perDay * (share ?? 1));
}

/**
 * Largest completion tokens per completion that `granted` ledger units pay for after the prompt
 * (Infinity when completions cost nothing on this ledger).
 */
export function completionAllowance(
  rate: CapRate,
  weight: number,
  granted: number,
  prompt: number,
  completions: number,
): number {
  const perToken = rate.price ? rate.price.outputPerMTokens : weight;
  if (perToken <= 0) return Number.POSITIVE_INFINITY;
  const forPrompt = rate.price ? rate.price.inputPerMTokens * prompt : weight * prompt;
  return Math.floor((granted - forPrompt) / (perToken * completions));
}

/**
 * The relay has used the capacity the operator allows this tier today. 503 rather than 429: the
 * member did nothing wrong and cannot fix it by slowing down; their own limits still hold.
 * The message says when it resets, never how much was spent.
 */
export class RelayCapacityError extends AppError {
  constructor(message: string, retryAfterSeconds: number, headers: Record<string, string> = {}) {
    super(message, {
      status: 503,
      type: 'service_unavailable',
      code: 'relay_capacity_reached',
      retryable: true,
      headers: { ...headers, 'retry-after': String(Math.max(1, Math.ceil(retryAfterSeconds))) },
    });
  }
}
