// In-process limit adapters: the default when no Redis is configured, and the insurance limiters
// that answer for Redis during an outage (see ../resilient-limits.ts). Limits hold per process.
import { EventEmitter } from 'node:events';
import { RateLimiterMemory, RateLimiterRes } from 'rate-limiter-flexible';
import { shiftDay } from '../../domain/budget-day.js';
import type {
  BudgetReservation,
  ConcurrencyLimiter,
  KeyEvents,
  RateDecision,
  RateLimiter,
  TokenBudget,
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

/** Maps a rate-limiter-flexible result to the port's decision (shared with the Redis adapter). */
export function decision(allowed: boolean, limit: number, res: RateLimiterRes): RateDecision {
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
}): void {
  if (!/^\d{4}-\d{2}-\d{2}$/.test(args.day)) throw new RangeError('budget day must be YYYY-MM-DD');
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

/**
 * How long a settle is remembered, so a repeated settle of the same request changes nothing.
 * Settles are retried within seconds; keeping a marker for the whole day would grow with traffic.
 */
export const SETTLED_MARKER_TTL_SEC = 3600;

interface DayLedger {
  used: number;
  /** requestId → tokens reserved and not yet settled. */
  reserved: Map<string, number>;
}

export class MemoryTokenBudget implements TokenBudget {
  /** day → subject → ledger. */
  readonly #days = new Map<string, Map<string, DayLedger>>();
  #newestDay = '';
  /** subject/day/requestId of recent settles → when the marker expires (epoch ms), oldest first. */
  readonly #settled = new Map<string, number>();

  async reserve(args: {
    subject: string;
    day: string;
    requestId: string;
    min: number;
    max: number;
    limit: number;
  }): Promise<BudgetReservation> {
    checkBudgetArgs(args);
    const ledger = this.#ledger(args.subject, args.day);
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
    const ledger = this.#ledger(args.subject, args.day);
    const now = Date.now();
    this.#forgetSettled(now);
    const marker = `${args.subject}\u0000${args.day}\u0000${args.requestId}`;
    if (this.#settled.has(marker)) return { used: ledger.used };
    ledger.used += args.actual - (ledger.reserved.get(args.requestId) ?? 0);
    ledger.reserved.delete(args.requestId);
    this.#settled.set(marker, now + SETTLED_MARKER_TTL_SEC * 1000);
    return { used: ledger.used };
  }

  async used(subject: string, day: string): Promise<number> {
    checkBudgetArgs({ day });
    return this.#days.get(day)?.get(subject)?.used ?? 0;
  }

  #ledger(subject: string, day: string): DayLedger {
    this.#forgetOldDays(day);
    let subjects = this.#days.get(day);
    if (!subjects) {
      subjects = new Map();
      this.#days.set(day, subjects);
    }
    let ledger = subjects.get(subject);
    if (!ledger) {
      ledger = { used: 0, reserved: new Map() };
      subjects.set(subject, ledger);
    }
    return ledger;
  }

  // Every marker gets the same window, so insertion order is expiry order: stop at the first live one
  // (a clock stepping back only keeps a few markers a little longer).
  #forgetSettled(now: number): void {
    for (const [marker, expiresAt] of this.#settled) {
      if (expiresAt > now) return;
      this.#settled.delete(marker);
    }
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
