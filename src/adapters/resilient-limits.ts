// What the limiters do when the shared store (Redis) fails: 'open' answers from in-process insurance
// limiters (same limits, per process), 'closed' refuses with 503. Only store failures count:
// refusals are data, and RangeError/TypeError are caller bugs that must surface as they are.
import { AppError, ServiceUnavailableError } from '../domain/errors.js';
import type {
  BudgetReservation,
  ChargeableTokenBudget,
  ConcurrencyLimiter,
  RateLimiter,
  TokenBudget,
} from '../domain/ports.js';

export interface LimitsLog {
  warn(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
}

export interface Limiters {
  rate: RateLimiter;
  concurrency: ConcurrencyLimiter;
  budget: TokenBudget;
}

export interface ResilientLimiters extends Limiters {
  /**
   * The store restarted (it may have come back empty, or from data older than its last writes):
   * settles, releases and charges it acknowledged within `replayWindowMs` are sent again.
   */
  storeRestarted(): void;
}

export type FailurePolicy = 'open' | 'closed';

export interface FailurePolicyOptions {
  /** After a failure the primary is skipped this long before one call probes it again. */
  probeAfterMs?: number;
  /** Cap on remembered fallback reservations/leases and on settles/releases waiting for the primary. */
  maxTracked?: number;
  /** Called for each call the primary failed (its store's fault), e.g. to count them in metrics. */
  onStoreFailure?: () => void;
  /**
   * How long settles, releases and charges the primary acknowledged are kept, to be sent again if
   * it restarts from older data (AOF `appendfsync everysec` loses about the last second).
   */
  replayWindowMs?: number;
}

type SettleArgs = Parameters<TokenBudget['settle']>[0];
type ChargeArgs = Parameters<ChargeableTokenBudget['charge']>[0];
type ReleaseArgs = { subject: string; leaseId: string };

/**
 * `primary` is the shared store's: its budget should be a ChargeableTokenBudget, so the spend the
 * fallback admitted reaches the store's ledgers (without `charge` it is only counted in-process).
 */
export function withFailurePolicy(
  primary: Limiters,
  fallback: Limiters,
  policy: FailurePolicy,
  log: LimitsLog,
  opts: FailurePolicyOptions = {},
): ResilientLimiters {
  const maxTracked = opts.maxTracked ?? 100_000;
  const primaryBudget = primary.budget as TokenBudget & Partial<ChargeableTokenBudget>;
  const probeAfterMs = opts.probeAfterMs ?? 1_000;
  // Reservations and leases taken by the fallback are settled/released there, never on the primary.
  // A reservation maps to whether it was settled yet: only its first settle is charged to the primary.
  const fallbackReservations = new BoundedMap<boolean>(maxTracked);
  const fallbackLeases = new BoundedMap<true>(maxTracked);
  // Settles of primary reservations and releases of primary leases that failed while the primary
  // was down, replayed once it is back. Both are idempotent on the primary, so a replay can never
  // charge twice or free someone else's slot; an unreplayed release would hold its slot until the TTL.
  const pendingSettles = new PendingCalls<SettleArgs>(maxTracked);
  const pendingReleases = new PendingCalls<ReleaseArgs>(maxTracked);
  // What the fallback's reservations were settled at: spend the primary's ledgers must take in, or
  // a member would get the day's budget again once the primary is back. Idempotent per request.
  const pendingCharges = new PendingCalls<ChargeArgs>(maxTracked);
  // What the primary acknowledged lately, for a restart that brings back older data.
  const recent = new RecentCalls(opts.replayWindowMs ?? 15_000, maxTracked);
  let flushing = false;
  let lastFlush = 0;

  const circuit = new Circuit(opts.probeAfterMs ?? 1_000, log, policy, opts.onStoreFailure, () => {
    log.info(
      {
        pendingSettles: pendingSettles.size,
        droppedSettles: pendingSettles.takeDropped(),
        pendingReleases: pendingReleases.size,
        droppedReleases: pendingReleases.takeDropped(),
        pendingCharges: pendingCharges.size,
        droppedCharges: pendingCharges.takeDropped(),
      },
      'limiter store recovered; using it again',
    );
    void flushPending();
  });

  const pendingCount = () => pendingReleases.size + pendingSettles.size + pendingCharges.size;

  /**
   * Resumes replays that stopped short (a ledger rebuild could not read the usage records). Runs
   * after calls the primary answered; nothing to do, and no round trip, while nothing waits.
   */
  function kick(): void {
    if (flushing || pendingCount() === 0 || Date.now() - lastFlush < probeAfterMs) return;
    void flushPending();
  }

  async function flushPending(): Promise<void> {
    if (flushing) return;
    flushing = true;
    lastFlush = Date.now();
    try {
      // Releases first: a lease left behind refuses requests, a late settle only shifts a count.
      (await replay(
        pendingReleases,
        (a) => primary.concurrency.release(a.subject, a.leaseId),
        (k, a) => recent.add('release', k, a),
        (a) => ({ leaseId: a.leaseId }),
        'dropping a release the limiter store refused',
      )) &&
        (await replay(
          pendingSettles,
          (a) => primary.budget.settle(a),
          (k, a) => recent.add('settle', k, a),
          (a) => ({ requestId: a.requestId }),
          'dropping a settle the limiter store refused',
        )) &&
        (await replay(
          pendingCharges,
          (a) => primaryBudget.charge!(a),
          (k, a) => recent.add('charge', k, a),
          (a) => ({ requestId: a.requestId }),
          'dropping a charge the limiter store refused',
        ));
    } finally {
      flushing = false;
    }
  }

  /** Replays queued calls oldest first; false if the primary went down again (the next recovery resumes). */
  async function replay<A>(
    queue: PendingCalls<A>,
    call: (args: A) => Promise<unknown>,
    done: (key: string, args: A) => void,
    logIds: (args: A) => object,
    dropMsg: string,
  ): Promise<boolean> {
    for (const [key, args] of queue.entries()) {
      try {
        const r = await circuit.attempt(() => call(args));
        if (!r.ok) return false;
        done(key, args);
      } catch (err) {
        // The store holding usage records could not rebuild a ledger: keep it for a later try.
        if (err instanceof ServiceUnavailableError) return false;
        // A caller error (queued without reaching the primary) would fail on every replay.
        log.warn({ ...logIds(args), error: (err as Error).message }, dropMsg);
      }
      queue.delete(key);
    }
    return true;
  }

  /** Sends a fallback reservation's charge to the primary now if it is up, else when it is back. */
  async function charge(args: ChargeArgs): Promise<void> {
    if (!primaryBudget.charge) return;
    const key = budgetKey(args);
    try {
      const r = await circuit.attempt(() => primaryBudget.charge!(args));
      if (r.ok) return recent.add('charge', key, args);
    } catch {
      // The ledger could not be rebuilt (store down): retried with the other queued calls.
    }
    pendingCharges.add(key, args);
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
      if (r.ok) {
        kick();
        return r.value;
      }
      return degrade(r.cause, () => fallback.rate.consume(subject, perMinute));
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
      if (res.ok) fallbackLeases.set(leaseKey(subject, leaseId), true);
      return res;
    },
    async release(subject, leaseId) {
      const key = leaseKey(subject, leaseId);
      if (fallbackLeases.delete(key)) return fallback.concurrency.release(subject, leaseId);
      // Never refused: the caller is done either way, and the slot is freed once the primary is back.
      const r = await circuit.attempt(() => primary.concurrency.release(subject, leaseId));
      if (r.ok) recent.add('release', key, { subject, leaseId });
      else pendingReleases.add(key, { subject, leaseId });
    },
  };

  const budget: TokenBudget = {
    async reserve(args) {
      const r = await circuit.attempt(() => primary.budget.reserve(args));
      if (r.ok) return r.value;
      // Likewise a reservation Redis may hold: settling it at 0 removes it, and does nothing if absent.
      const { subject, day, requestId } = args;
      const key = budgetKey(args);
      if (r.attempted) pendingSettles.add(key, { subject, day, requestId, actual: 0 });
      const res: BudgetReservation = await degrade(r.cause, () => fallback.budget.reserve(args));
      if (res.ok) fallbackReservations.set(key, false);
      return res;
    },
    async settle(args) {
      const key = budgetKey(args);
      // Kept after settling: a repeated settle must reach the same ledger to be a no-op.
      const settled = fallbackReservations.get(key);
      if (settled !== undefined) {
        const at = Date.now();
        const res = await fallback.budget.settle(args);
        if (!settled) {
          fallbackReservations.set(key, true);
          if (args.actual > 0) await charge({ ...args, at });
        }
        return res;
      }
      const r = await circuit.attempt(() => primary.budget.settle(args));
      if (r.ok) {
        recent.add('settle', key, args);
        return r.value;
      }
      pendingSettles.add(key, args);
      return degrade(r.cause, async () => ({ used: await fallback.budget.used(args.subject, args.day) }));
    },
    async used(subject, day) {
      const r = await circuit.attempt(() => primary.budget.used(subject, day));
      return r.ok ? r.value : degrade(r.cause, () => fallback.budget.used(subject, day));
    },
  };

  function storeRestarted(): void {
    const calls = recent.takeAll();
    log.info({ replayed: calls.length }, 'limiter store restarted; sending its latest settles and releases again');
    for (const [key, c] of calls) {
      if (c.release) pendingReleases.add(key, c.release);
      else if (c.settle) pendingSettles.add(key, c.settle);
      else if (c.charge) pendingCharges.add(key, c.charge);
    }
    void flushPending();
  }

  return { rate, concurrency, budget, storeRestarted };
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

/** One request's entry on one ledger (a request reserves on its member's and on each cost cap's). */
function budgetKey(a: { subject: string; day: string; requestId: string }): string {
  return `${a.subject}\u0000${a.day}\u0000${a.requestId}`;
}

type Acknowledged = { release?: ReleaseArgs; settle?: SettleArgs; charge?: ChargeArgs };

/**
 * Calls the primary acknowledged within the last `windowMs` (at most `max`), oldest first. Only
 * memory: nothing is sent to the store unless it restarts. A queue in parallel arrays rather than a
 * map: under load it holds about two calls per request of the window, and a map whose oldest
 * entries are deleted on every add made each add walk over the holes they left. A call seen twice
 * is kept twice; replaying it twice is harmless, since every replayed call is idempotent.
 */
class RecentCalls {
  #at: number[] = [];
  #keys: string[] = [];
  #calls: Acknowledged[] = [];
  #head = 0;

  constructor(
    private readonly windowMs: number,
    private readonly max: number,
  ) {}

  add<K extends keyof Acknowledged>(kind: K, key: string, args: NonNullable<Acknowledged[K]>): void {
    const now = Date.now();
    const at = this.#at;
    let head = this.#head;
    while (head < at.length && (at.length - head >= this.max || now - at[head]! > this.windowMs)) head++;
    if (head > 1024 && head * 2 > at.length) {
      // Compacted now and then, so dropping the oldest stays cheap.
      this.#at = at.slice(head);
      this.#keys = this.#keys.slice(head);
      this.#calls = this.#calls.slice(head);
      head = 0;
    }
    this.#head = head;
    this.#at.push(now);
    this.#keys.push(key);
    this.#calls.push({ [kind]: args });
  }

  takeAll(): Array<[string, Acknowledged]> {
    const out: Array<[string, Acknowledged]> = [];
    for (let i = this.#head; i < this.#at.length; i++) out.push([this.#keys[i]!, this.#calls[i]!]);
    this.#at = [];
    this.#keys = [];
    this.#calls = [];
    this.#head = 0;
    return out;
  }
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

/** A map that forgets its oldest entries beyond `max`, so an outage cannot grow memory without bound. */
class BoundedMap<V> {
  readonly #items = new Map<string, V>();
  constructor(private readonly max: number) {}

  set(key: string, value: V): void {
    if (!this.#items.has(key) && this.#items.size >= this.max) {
      const oldest = this.#items.keys().next().value;
      if (oldest !== undefined) this.#items.delete(oldest);
    }
    this.#items.set(key, value);
  }

  get(key: string): V | undefined {
    return this.#items.get(key);
  }

  delete(key: string): boolean {
    return this.#items.delete(key);
  }
}
