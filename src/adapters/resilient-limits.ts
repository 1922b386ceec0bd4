// What the limiters do when the shared store (Redis) fails: 'open' answers from in-process insurance
// limiters (same limits, per process), 'closed' refuses with 503. Only store failures count:
// refusals are data, and RangeError/TypeError are caller bugs that must surface as they are.
import { AppError, ServiceUnavailableError } from '../domain/errors.js';
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
  /** Cap on remembered fallback reservations/leases and on settles/releases waiting for the primary. */
  maxTracked?: number;
  /** Called for each call the primary failed (its store's fault), e.g. to count them in metrics. */
  onStoreFailure?: () => void;
}

type SettleArgs = Parameters<TokenBudget['settle']>[0];
type ReleaseArgs = { subject: string; leaseId: string };

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
  // Settles of primary reservations and releases of primary leases that failed while the primary
  // was down, replayed once it is back. Both are idempotent on the primary, so a replay can never
  // charge twice or free someone else's slot; an unreplayed release would hold its slot until the TTL.
  const pendingSettles = new PendingCalls<SettleArgs>(maxTracked);
  const pendingReleases = new PendingCalls<ReleaseArgs>(maxTracked);
  let flushing = false;

  const circuit = new Circuit(opts.probeAfterMs ?? 1_000, log, policy, opts.onStoreFailure, () => {
    log.info(
      {
        pendingSettles: pendingSettles.size,
        droppedSettles: pendingSettles.takeDropped(),
        pendingReleases: pendingReleases.size,
        droppedReleases: pendingReleases.takeDropped(),
      },
      'limiter store recovered; using it again',
    );
    void flushPending();
  });

  async function flushPending(): Promise<void> {
    if (flushing) return;
    flushing = true;
    try {
      // Releases first: a lease left behind refuses requests, a late settle only shifts a count.
      const released = await replay(
        pendingReleases,
        (a) => primary.concurrency.release(a.subject, a.leaseId),
        (a) => ({ leaseId: a.leaseId }),
        'dropping a release the limiter store refused',
      );
      if (released) {
        await replay(
          pendingSettles,
          (a) => primary.budget.settle(a),
          (a) => ({ requestId: a.requestId }),
          'dropping a settle the limiter store refused',
        );
      }
    } finally {
      flushing = false;
    }
  }

  /** Replays queued calls oldest first; false if the primary went down again (the next recovery resumes). */
  async function replay<A>(
    queue: PendingCalls<A>,
    call: (args: A) => Promise<unknown>,
    logIds: (args: A) => object,
    dropMsg: string,
  ): Promise<boolean> {
    for (const [key, args] of queue.entries()) {
      try {
        const r = await circuit.attempt(() => call(args));
        if (!r.ok) return false;
      } catch (err) {
        // A caller error (queued without reaching the primary) would fail on every replay.
        log.warn({ ...logIds(args), error: (err as Error).message }, dropMsg);
      }
      queue.delete(key);
    }
    return true;
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
      // The call may have taken the slot in Redis after all (it ran, but its answer came too late):
      // free it there once Redis is back. Releasing a lease that was never taken changes nothing.
      if (r.attempted) pendingReleases.add(leaseKey(subject, leaseId), { subject, leaseId });
      const res = await degrade(r.cause, () => fallback.concurrency.acquire(subject, leaseId, max, ttlMs));
      if (res.ok) fallbackLeases.add(leaseKey(subject, leaseId));
      return res;
    },
    async release(subject, leaseId) {
      const key = leaseKey(subject, leaseId);
      if (fallbackLeases.delete(key)) return fallback.concurrency.release(subject, leaseId);
      // Never refused: the caller is done either way, and the slot is freed once the primary is back.
      const r = await circuit.attempt(() => primary.concurrency.release(subject, leaseId));
      if (!r.ok) pendingReleases.add(key, { subject, leaseId });
    },
  };

  const budget: TokenBudget = {
    async reserve(args) {
      const r = await circuit.attempt(() => primary.budget.reserve(args));
      if (r.ok) return r.value;
      // Likewise a reservation Redis may hold: settling it at 0 removes it, and does nothing if absent.
      const { subject, day, requestId } = args;
      if (r.attempted) pendingSettles.add(requestId, { subject, day, requestId, actual: 0 });
      const res: BudgetReservation = await degrade(r.cause, () => fallback.budget.reserve(args));
      if (res.ok) fallbackReservations.add(args.requestId);
      return res;
    },
    async settle(args) {
      // Kept after settling: a repeated settle must reach the same ledger to be a no-op.
      if (fallbackReservations.has(args.requestId)) return fallback.budget.settle(args);
      const r = await circuit.attempt(() => primary.budget.settle(args));
      if (r.ok) return r.value;
      pendingSettles.add(args.requestId, args);
      return degrade(r.cause, async () => ({ used: await fallback.budget.used(args.subject, args.day) }));
    },
    async used(subject, day) {
      const r = await circuit.attempt(() => primary.budget.used(subject, day));
      return r.ok ? r.value : degrade(r.cause, () => fallback.budget.used(subject, day));
    },
  };

  return { rate, concurrency, budget };
}

/** `attempted` is false when the call was skipped because the primary is known to be down. */
type Attempt<T> = { ok: true; value: T } | { ok: false; cause: unknown; attempted: boolean };

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
    private readonly onFailure: (() => void) | undefined,
    private readonly onRecovered: () => void,
  ) {}

  async attempt<T>(call: () => Promise<T>): Promise<Attempt<T>> {
    if (this.#down && (this.#probing || Date.now() < this.#retryAt))
      return { ok: false, cause: this.#lastCause, attempted: false };
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
      this.onFailure?.();
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
      return { ok: false, cause: err, attempted: true };
    } finally {
      if (probe) this.#probing = false;
    }
  }
}

/** Errors of the limiter store itself; refusals with an answer of their own (AppError) pass through. */
function isStoreFailure(err: unknown): boolean {
  return (
    err instanceof Error && !(err instanceof RangeError) && !(err instanceof TypeError) && !(err instanceof AppError)
  );
}

function leaseKey(subject: string, leaseId: string): string {
  return `${subject}\u0000${leaseId}`;
}

/**
 * Calls waiting for the primary, keyed so a repeated call replaces its earlier copy. Beyond `max`
 * the oldest are forgotten (and counted) so an outage cannot grow memory without bound.
 */
class PendingCalls<A> {
  readonly #calls = new Map<string, A>();
  #dropped = 0;
  constructor(private readonly max: number) {}

  get size(): number {
    return this.#calls.size;
  }

  add(key: string, args: A): void {
    if (!this.#calls.has(key) && this.#calls.size >= this.max) {
      const oldest = this.#calls.keys().next().value;
      if (oldest !== undefined) this.#calls.delete(oldest);
      this.#dropped++;
    }
    this.#calls.set(key, args);
  }

  entries(): IterableIterator<[string, A]> {
    return this.#calls.entries();
  }

  delete(key: string): void {
    this.#calls.delete(key);
  }

  /** How many were forgotten since the last call. */
  takeDropped(): number {
    const n = this.#dropped;
    this.#dropped = 0;
    return n;
  }
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
