// In-process limit adapters: the default when no Redis is configured, and the insurance limiters
// that answer for Redis during an outage (see ../resilient-limits.ts). Limits hold per process.
import { EventEmitter } from 'node:events';
import { RateLimiterMemory, RateLimiterRes } from 'rate-limiter-flexible';
import { shiftDay } from '../../domain/budget-day.js';
import type {
  BudgetReservation,
  ChargeableTokenBudget,
  ConcurrencyLimiter,
  KeyEvents,
  RateDecision,
  RateLimiter,
} from '../../domain/ports.js';

export class MemoryRateLimiter implements RateLimiter {
  // rate-limiter-flexible fixes `points` per instance, so each distinct limit gets its own.
  readonly #limiters = new Map<number, RateLimiterMemory>();

  async consume(subject: string, perMinute: number): Promise<RateDecision> {
    let limiter = this.#limiters.get(perMinute);
    if (!limiter) {
      limiter = new RateLimiterMemory({ points: perMinute, duration: 60 });
      this.#limiters.set(perMinute, limiter);
    }
    try {
      const res = await limiter.consume(subject);
      return decision(true, perMinute, res);
    } catch (err) {
      if (err instanceof RateLimiterRes) return decision(false, perMinute, err);
      throw err;
    }
  }
}

/** Maps a rate-limiter-flexible result to the port's decision. */
function decision(allowed: boolean, limit: number, res: RateLimiterRes): RateDecision {
  return {
    allowed,
    limit,
    remaining: allowed ? res.remainingPoints : 0,
    // Never 0: a caller turns this into retry-after and must not be told "retry now" at the edge.
    resetMs: Math.min(60_000, Math.max(1, res.msBeforeNext)),
  };
}

/**
 * Rejects malformed budget arguments before they reach a store (shared with the Redis adapter).
 * A RangeError is a caller bug, never a store failure: the failure policy lets it through.
 */
export function checkBudgetArgs(args: {
  day: string;
  min?: number;
  max?: number;
  limit?: number;
  actual?: number;
  /** A charge's time, epoch ms. */
  at?: number;
}): void {
  if (!/^\d{4}-\d{2}-\d{2}$/.test(args.day)) throw new RangeError('budget day must be YYYY-MM-DD');
  if (args.at !== undefined && !(Number.isSafeInteger(args.at) && args.at >= 0)) {
    throw new RangeError('charge time must be epoch ms');
  }
  for (const field of ['min', 'max', 'limit', 'actual'] as const) {
    const v = args[field];
    // Tokens are whole numbers: Redis counts with HINCRBY, so callers round weighted charges.
    if (v !== undefined && !(Number.isSafeInteger(v) && v >= 0)) {
      throw new RangeError(`budget ${field} must be a non-negative integer`);
    }
  }
  if (args.min !== undefined && args.max !== undefined && args.min > args.max) {
    throw new RangeError('budget min must not exceed max');
  }
}

/** Tokens to grant, or null to refuse: nothing left, or less than `min` fits. Mirrored by the Redis Lua. */
function grantFor(used: number, args: { min: number; max: number; limit: number }): number | null {
  const available = args.limit - used;
  if (available <= 0) return null;
  const granted = Math.min(args.max, available);
  return granted < args.min ? null : granted;
}

const SWEEP_EVERY_MS = 60_000;

export class MemoryConcurrencyLimiter implements ConcurrencyLimiter {
  /** subject → leaseId → expiry (epoch ms). */
  readonly #leases = new Map<string, Map<string, number>>();
  #lastSweep = Date.now();

  async acquire(
    subject: string,
    leaseId: string,
    max: number,
    ttlMs: number,
  ): Promise<{ ok: boolean; active: number }> {
    const now = Date.now();
    this.#sweepIfDue(now);
    const leases = this.#leases.get(subject) ?? new Map<string, number>();
    dropExpired(leases, now);
    // Re-acquiring a held lease refreshes it instead of taking a second slot.
    const ok = leases.has(leaseId) || leases.size < max;
    if (ok) leases.set(leaseId, now + ttlMs);
    if (leases.size > 0) this.#leases.set(subject, leases);
    else this.#leases.delete(subject);
    return { ok, active: leases.size };
  }

  async release(subject: string, leaseId: string): Promise<void> {
    const leases = this.#leases.get(subject);
    if (!leases) return;
    leases.delete(leaseId);
    if (leases.size === 0) this.#leases.delete(subject);
  }

  // Subjects that are never touched again would otherwise keep their expired leases forever.
  #sweepIfDue(now: number): void {
    if (now - this.#lastSweep < SWEEP_EVERY_MS) return;
    this.#lastSweep = now;
    for (const [subject, leases] of this.#leases) {
      dropExpired(leases, now);
      if (leases.size === 0) this.#leases.delete(subject);
    }
  }
}

function dropExpired(leases: Map<string, number>, now: number): void {
  for (const [id, expiresAt] of leases) if (expiresAt <= now) leases.delete(id);
}

interface DayLedger {
  used: number;
  /** requestId → tokens reserved and not yet settled. Settled requests leave no trace. */
  reserved: Map<string, number>;
  /** Requests whose spend elsewhere was added by `charge` (created on the first one). */
  charged?: Set<string>;
  /** When the ledger was rebuilt from the usage records (epoch ms), if it was. */
  rebuiltAt?: number;
}

/** Today's spend of a subject according to the durable usage records. */
export type BudgetHistory = (subject: string, day: string) => Promise<number>;

/**
 * Whether a ledger missing for `day` may have existed before `since` (epoch ms) and been lost: the
 * day can have begun before then. Days begin at the earliest at UTC midnight − 14 h (UTC+14).
 */
export function mayHaveLostDay(day: string, since: number): boolean {
  return since > Date.parse(`${day}T00:00:00Z`) - 14 * 3600_000;
}

export class MemoryTokenBudget implements ChargeableTokenBudget {
  /** day → subject → ledger. */
  readonly #days = new Map<string, Map<string, DayLedger>>();
  #newestDay = '';
  /** Ledgers being rebuilt from history, so concurrent first requests wait for one rebuild. */
  readonly #seeding = new Map<string, Promise<DayLedger>>();
  readonly #startedAt = Date.now();

  /** `history` rebuilds a day this process started in the middle of (a restart forgets nothing). */
  constructor(private readonly history?: BudgetHistory) {}

  async reserve(args: {
    subject: string;
    day: string;
    requestId: string;
    min: number;
    max: number;
    limit: number;
  }): Promise<BudgetReservation> {
    checkBudgetArgs(args);
    const ledger = this.#find(args.subject, args.day) ?? (await this.#create(args.subject, args.day));
    const existing = ledger.reserved.get(args.requestId);
    if (existing !== undefined) return { ok: true, granted: existing, used: ledger.used, limit: args.limit };
    const granted = grantFor(ledger.used, args);
    if (granted === null) return { ok: false, granted: 0, used: ledger.used, limit: args.limit };
    ledger.used += granted;
    ledger.reserved.set(args.requestId, granted);
    return { ok: true, granted, used: ledger.used, limit: args.limit };
  }

  async settle(args: { subject: string; day: string; requestId: string; actual: number }): Promise<{ used: number }> {
    checkBudgetArgs(args);
    const ledger = this.#find(args.subject, args.day);
    if (!ledger) return { used: 0 };
    const reserved = ledger.reserved.get(args.requestId);
    if (reserved !== undefined) {
      ledger.used += args.actual - reserved;
      ledger.reserved.delete(args.requestId);
    }
    return { used: ledger.used };
  }

  async charge(args: {
    subject: string;
    day: string;
    requestId: string;
    actual: number;
    at: number;
  }): Promise<{ used: number }> {
    checkBudgetArgs(args);
    const ledger = this.#find(args.subject, args.day) ?? (await this.#create(args.subject, args.day));
    // A rebuild after the spend counted it already.
    if (ledger.rebuiltAt !== undefined && ledger.rebuiltAt >= args.at) return { used: ledger.used };
    ledger.charged ??= new Set();
    if (!ledger.charged.has(args.requestId)) {
      ledger.charged.add(args.requestId);
      ledger.used += args.actual;
    }
    return { used: ledger.used };
  }

  async used(subject: string, day: string): Promise<number> {
    checkBudgetArgs({ day });
    return this.#find(subject, day)?.used ?? 0;
  }

  #find(subject: string, day: string): DayLedger | undefined {
    return this.#days.get(day)?.get(subject);
  }

  #create(subject: string, day: string): Promise<DayLedger> {
    const id = `${day} ${subject}`;
    let pending = this.#seeding.get(id);
    if (!pending) {
      pending = (async () => {
        if (!this.history || !mayHaveLostDay(day, this.#startedAt)) {
          return this.#find(subject, day) ?? this.#insert(subject, day, 0);
        }
        const spent = await this.history(subject, day);
        // Taken after the read, as the Redis adapter does (see its #seed).
        const rebuiltAt = Date.now();
        return this.#find(subject, day) ?? Object.assign(this.#insert(subject, day, spent), { rebuiltAt });
      })().finally(() => this.#seeding.delete(id));
      this.#seeding.set(id, pending);
    }
    return pending;
  }

  #insert(subject: string, day: string, used: number): DayLedger {
    this.#forgetOldDays(day);
    let subjects = this.#days.get(day);
    if (!subjects) {
      subjects = new Map();
      this.#days.set(day, subjects);
    }
    const ledger: DayLedger = { used, reserved: new Map() };
    subjects.set(subject, ledger);
    return ledger;
  }

  // Keeps today and yesterday: a request that started before midnight settles on its own day.
  #forgetOldDays(day: string): void {
    if (day <= this.#newestDay) return;
    this.#newestDay = day;
    const oldestKept = shiftDay(day, -1);
    for (const d of this.#days.keys()) if (d < oldestKept) this.#days.delete(d);
  }
}

const CHANGE = 'key-changed';

/**
 * Key change events within one process. Instances built on the same `bus` see each other's
 * events, as replicas do through Redis.
 */
export class MemoryKeyEvents implements KeyEvents {
  readonly #bus: EventEmitter;
  readonly #listeners: Array<(keyHash: string) => void> = [];

  constructor(bus: EventEmitter = new EventEmitter()) {
    this.#bus = bus;
    // One listener per subscribing cache is normal; many replicas in tests are too.
    bus.setMaxListeners(0);
  }

  async publish(keyHash: string): Promise<void> {
    this.#bus.emit(CHANGE, keyHash);
  }

  async subscribe(onChange: (keyHash: string) => void): Promise<void> {
    this.#listeners.push(onChange);
    this.#bus.on(CHANGE, onChange);
  }

  async close(): Promise<void> {
    for (const l of this.#listeners.splice(0)) this.#bus.off(CHANGE, l);
  }
}
