// What the limiters do when the shared store (Redis) fails: 'open' answers from in-process insurance
// limiters (same limits, per process), 'closed' refuses with 503. Only store failures count:
// refusals are data, and RangeError/TypeError are caller bugs that must surface as they are.
import { ServiceUnavailableError } from '../domain/errors.js';
import type { BudgetReservation, ConcurrencyLimiter, RateLimiter, TokenBudget } from '../domain/ports.js';

export interface LimitsLog {
  warn(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
}

export interface Limiters {
  rate: RateLimiter;
  concurrency: ConcurrencyLimiter;
  budget: TokenBudget;
}

export type FailurePolicy = 'open' | 'closed';

export interface FailurePolicyOptions {
  /** After a failure the primary is skipped this long before one call probes it again. */
  probeAfterMs?: number;
  /** Cap on remembered fallback reservations/leases and on settles waiting for the primary. */
  maxTracked?: number;
}

type SettleArgs = Parameters<TokenBudget['settle']>[0];

export function withFailurePolicy(
  primary: Limiters,
  fallback: Limiters,
  policy: FailurePolicy,
  log: LimitsLog,
  opts: FailurePolicyOptions = {},
): Limiters {
  const maxTracked = opts.maxTracked ?? 100_000;
  // Reservations and leases taken by the fallback are settled/released there, never on the primary.
  const fallbackReservations = new BoundedSet(maxTracked);
  const fallbackLeases = new BoundedSet(maxTracked);
  // Settles of primary reservations made while the primary was down, replayed once it is back
  // (the primary's settle is idempotent, so a replay can never charge twice).
  const pendingSettles = new Map<string, SettleArgs>();
  let droppedSettles = 0;
  let flushing = false;

  const circuit = new Circuit(opts.probeAfterMs ?? 1_000, log, policy, () => {
    log.info({ pendingSettles: pendingSettles.size, droppedSettles }, 'limiter store recovered; using it again');
    droppedSettles = 0;
    void flushSettles();
  });

  async function flushSettles(): Promise<void> {
    if (flushing) return;
    flushing = true;
    try {
      for (const [requestId, args] of pendingSettles) {
        try {
          const r = await circuit.attempt(() => primary.budget.settle(args));
          if (!r.ok) return; // Down again: the next recovery flushes the rest.
        } catch (err) {
          // A caller error (queued without reaching the primary) would fail on every replay.
          log.warn({ requestId, error: (err as Error).message }, 'dropping a settle the limiter store refused');
        }
        pendingSettles.delete(requestId);
      }
    } finally {
      flushing = false;
    }
  }

  function degrade<T>(cause: unknown, useFallback: () => Promise<T>): Promise<T> {
    if (policy === 'closed') {
      return Promise.reject(
        new ServiceUnavailableError(
          'Usage limits cannot be checked right now. Retry shortly.',
          'limiter_unavailable',
          cause,
        ),
      );
    }
    return useFallback();
  }

  const rate: RateLimiter = {
    async consume(subject, perMinute) {
      const r = await circuit.attempt(() => primary.rate.consume(subject, perMinute));
      return r.ok ? r.value : degrade(r.cause, () => fallback.rate.consume(subject, perMinute));
    },
  };

  const concurrency: ConcurrencyLimiter = {
    async acquire(subject, leaseId, max, ttlMs) {
      const r = await circuit.attempt(() => primary.concurrency.acquire(subject, leaseId, max, ttlMs));
      if (r.ok) return r.value;
      const res = await degrade(r.cause, () => fallback.concurrency.acquire(subject, leaseId, max, ttlMs));
      if (res.ok) fallbackLeases.add(leaseKey(subject, leaseId));
      return res;
    },
    async release(subject, leaseId) {
      if (fallbackLeases.delete(leaseKey(subject, leaseId))) return fallback.concurrency.release(subject, leaseId);
      // A lease the primary could not release expires by its TTL: nothing to refuse or retry.
      await circuit.attempt(() => primary.concurrency.release(subject, leaseId));
    },
  };

  const budget: TokenBudget = {
    async reserve(args) {
      const r = await circuit.attempt(() => primary.budget.reserve(args));
      if (r.ok) return r.value;
      const res: BudgetReservation = await degrade(r.cause, () => fallback.budget.reserve(args));
      if (res.ok) fallbackReservations.add(args.requestId);
      return res;
    },
    async settle(args) {
      // Kept after settling: a repeated settle must reach the same ledger to be a no-op.
      if (fallbackReservations.has(args.requestId)) return fallback.budget.settle(args);
      const r = await circuit.attempt(() => primary.budget.settle(args));
      if (r.ok) return r.value;
      if (pendingSettles.size >= maxTracked) {
        const oldest = pendingSettles.keys().next().value;
        if (oldest !== undefined) pendingSettles.delete(oldest);
        droppedSettles++;
      }
      pendingSettles.set(args.requestId, args);
      // 'open' also charges the insurance ledger, so this process keeps counting during the outage.
      return degrade(r.cause, () => fallback.budget.settle(args));
    },
    async used(subject, day) {
      const r = await circuit.attempt(() => primary.budget.used(subject, day));
      return r.ok ? r.value : degrade(r.cause, () => fallback.budget.used(subject, day));
    },
  };

  return { rate, concurrency, budget };
}

type Attempt<T> = { ok: true; value: T } | { ok: false; cause: unknown };

/**
 * Tracks whether the primary is usable. While it is down, calls skip it (no connect latency on
 * every request) and one call at a time probes it every `probeAfterMs`; only a probe may declare
 * recovery, so a late answer to a call sent before the outage cannot flip the state back.
 */
class Circuit {
  #down = false;
  #probing = false;
  #retryAt = 0;
  #lastCause: unknown = null;

  constructor(
    private readonly probeAfterMs: number,
    private readonly log: LimitsLog,
    private readonly policy: FailurePolicy,
    private readonly onRecovered: () => void,
  ) {}

  async attempt<T>(call: () => Promise<T>): Promise<Attempt<T>> {
    if (this.#down && (this.#probing || Date.now() < this.#retryAt)) return { ok: false, cause: this.#lastCause };
    const probe = this.#down;
    if (probe) this.#probing = true;
    try {
      const value = await call();
      if (probe && this.#down) {
        this.#down = false;
        this.onRecovered();
      }
      return { ok: true, value };
    } catch (err) {
      if (!isStoreFailure(err)) throw err;
      this.#lastCause = err;
      this.#retryAt = Date.now() + this.probeAfterMs;
      if (!this.#down) {
        this.#down = true;
        this.log.warn(
          { policy: this.policy, error: (err as Error).message },
          this.policy === 'open'
            ? 'limiter store unavailable; enforcing limits per process until it is back'
            : 'limiter store unavailable; refusing requests until it is back',
        );
      }
      return { ok: false, cause: err };
    } finally {
      if (probe) this.#probing = false;
    }
  }
}

function isStoreFailure(err: unknown): boolean {
  return err instanceof Error && !(err instanceof RangeError) && !(err instanceof TypeError);
}

function leaseKey(subject: string, leaseId: string): string {
  return `${subject}\u0000${leaseId}`;
}

/** A set that forgets its oldest entries beyond `max`, so an outage cannot grow memory without bound. */
class BoundedSet {
  readonly #items = new Set<string>();
  constructor(private readonly max: number) {}

  add(item: string): void {
    if (this.#items.size >= this.max) {
      const oldest = this.#items.values().next().value;
      if (oldest !== undefined) this.#items.delete(oldest);
    }
    this.#items.add(item);
  }

  has(item: string): boolean {
    return this.#items.has(item);
  }

  delete(item: string): boolean {
    return this.#items.delete(item);
  }
}
