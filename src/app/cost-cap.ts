// The operator cost cap as configured: which ledgers exist, which a model's requests count against,
// and what the store's usage records say was spent on each (for a rebuilt day and the CLI).
//
// A model counts against the relay's ledgers and those of its primary upstream (its first route).
// Failover to a later route is rare (connect errors, 5xx, 429 before the first byte) and is charged
// to the primary too, so live ledgers and a day rebuilt from records agree.
import type { FileConfig } from '../config/schema.js';
import type { BudgetCalendar } from '../domain/budget-day.js';
import { type CapLedger, type CapRate, type CapUnit, capSubject, MICRO } from '../domain/cost-cap.js';
import type { Store, TokenBudget } from '../domain/ports.js';

export interface CostCapPlan {
  /** ISO code the currency caps and prices are in (display only). */
  readonly currency: string;
  readonly ledgers: readonly CapLedger[];
  /**
   * Ledgers a request for `model` counts against. A model without a price or route counts against the
   * relay's token ledger only (its price and upstream are unknown).
   */
  ratesFor(model: string): readonly CapRate[];
}

type CapConfig = Pick<FileConfig, 'costCap' | 'models'>;
type CapLimits = { tokensPerDay?: number | undefined; currencyPerDay?: number | undefined };

function ledgersOf(scope: string, limits: CapLimits | undefined): CapLedger[] {
  const out: CapLedger[] = [];
  const add = (unit: CapUnit, perDay: number) => out.push({ subject: capSubject(unit, scope), scope, unit, perDay });
  if (limits?.tokensPerDay !== undefined) add('tokens', limits.tokensPerDay);
  if (limits?.currencyPerDay !== undefined) add('currency', Math.round(limits.currencyPerDay * MICRO));
  return out;
}

/** The cap's ledgers and each model's rates, computed once at startup; null when no cap is set. */
export function planCostCap(cfg: CapConfig): CostCapPlan | null {
  const cap = cfg.costCap;
  if (!cap) return null;
  const relay = ledgersOf('relay', cap.relay);
  const byUpstream = new Map(Object.entries(cap.upstreams).map(([u, l]) => [u, ledgersOf(`upstream:${u}`, l)]));
  const ledgers = [...relay, ...[...byUpstream.values()].flat()];
  if (ledgers.length === 0) return null;

  const fallback: CapRate[] = relay.filter((l) => l.unit === 'tokens').map((ledger) => ({ ledger, price: null }));
  const rates = new Map<string, CapRate[]>();
  for (const [model, m] of Object.entries(cfg.models)) {
    const primary = m.routes[0]?.upstream;
    const applies = [...relay, ...((primary && byUpstream.get(primary)) || [])];
    rates.set(
      model,
      applies.map((ledger) => {
        if (ledger.unit === 'tokens') return { ledger, price: null };
        // Config validation requires the price; a missing one here is a bug, not a free model.
        if (!m.price) throw new Error(`models.${model}.price is required by the ${ledger.scope} currency cap`);
        return { ledger, price: m.price };
      }),
    );
  }
  return {
    currency: cap.currency,
    ledgers,
    ratesFor: (model) => rates.get(model) ?? fallback,
  };
}

type ModelTotals = Awaited<ReturnType<Store['modelTotals']>>[number];

/** Each ledger's spend according to a day's totals per model (ledger units, rounded up). */
export function spendFromUsage(
  plan: CostCapPlan,
  rows: ReadonlyArray<Pick<ModelTotals, 'model' | 'promptTokens' | 'completionTokens' | 'chargedTokens'>>,
): Map<string, number> {
  const exact = new Map<string, number>(plan.ledgers.map((l) => [l.subject, 0]));
  for (const r of rows) {
    for (const { ledger, price } of plan.ratesFor(r.model)) {
      const cost = price
        ? price.inputPerMTokens * r.promptTokens + price.outputPerMTokens * r.completionTokens
        : r.chargedTokens;
      exact.set(ledger.subject, (exact.get(ledger.subject) ?? 0) + cost);
    }
  }
  return new Map([...exact].map(([s, v]) => [s, Math.ceil(v)]));
}

/**
 * A cap ledger's spend on `day` from the store, for a limiter that lost the day. Every cap ledger
 * is rebuilt from the same rows, so concurrent rebuilds of one day share one query.
 */
export function capHistory(
  store: Pick<Store, 'modelTotals'>,
  plan: CostCapPlan,
): (subject: string, day: string) => Promise<number> {
  const pending = new Map<string, Promise<Map<string, number>>>();
  return async (subject, day) => {
    let spend = pending.get(day);
    if (!spend) {
      spend = store
        .modelTotals(day)
        .then((rows) => spendFromUsage(plan, rows))
        .finally(() => pending.delete(day));
      pending.set(day, spend);
    }
    return (await spend).get(subject) ?? 0;
  };
}

export interface LedgerSpend {
  scope: string;
  unit: CapUnit;
  /** Today's spend (reservations in flight included), in budget tokens or in the currency. */
  spent: number;
  /** The cap in the same unit. */
  cap: number;
}

/** A ledger amount in its operator-facing unit: budget tokens, or the currency (not millionths). */
export const inUnit = (l: CapLedger, v: number): number => (l.unit === 'currency' ? v / MICRO : v);

/** Reads today's spend on every ledger from the limiter (for metrics, when they are scraped). */
export function ledgerSpend(
  plan: CostCapPlan,
  budget: Pick<TokenBudget, 'used'>,
  calendar: BudgetCalendar,
  now: () => Date,
): () => Promise<LedgerSpend[]> {
  return async () => {
    const { day } = calendar.at(now());
    const used = await Promise.all(plan.ledgers.map((l) => budget.used(l.subject, day)));
    return plan.ledgers.map((l, i) => ({
      scope: l.scope,
      unit: l.unit,
      spent: inUnit(l, used[i]!),
      cap: inUnit(l, l.perDay),
    }));
  };
}
