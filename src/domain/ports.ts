// Ports: what the use cases need from the outside world. Adapters in src/adapters implement them;
// every adapter of a port passes the same contract suite in test/contract.
import type { Cancellation } from './cancellation.js';
import type { AuditEntry, DailyUsage, KeyPatch, KeyRecord, UsageRecord, User } from './types.js';

/** Persistent state: users, keys, usage metadata, audit log. */
export interface Store {
  /** Creates the user if missing; returns the stored user either way. */
  ensureUser(discordId: string, now: Date): Promise<User>;
  getUser(discordId: string): Promise<User | null>;
  /** Sets or clears the relay ban. Returns null for an unknown user. */
  setUserBan(discordId: string, ban: { at: Date; reason: string } | null): Promise<User | null>;
  /**
   * Removes the user, all their keys and usage (request records and daily aggregates).
   * Audit entries stay (they name ids, not personal data). Returns what was removed.
   */
  deleteUser(discordId: string): Promise<{ keys: number; usageRecords: number }>;

  /**
   * Stores a new key. Throws `LiveKeyExistsError` when the owner already has a live
   * (active or suspended) key: one live key per Discord user, enforced by the database.
   */
  insertKey(key: KeyRecord): Promise<void>;
  getKeyById(id: string): Promise<KeyRecord | null>;
  getKeyByHash(hash: string): Promise<KeyRecord | null>;
  /** Keys newest first. */
  listKeys(filter: { discordId?: string; status?: KeyRecord['status']; limit?: number }): Promise<KeyRecord[]>;
  /**
   * Applies `patch` atomically when the key's current status is one of `ifStatus` (any status when
   * omitted). Returns the updated record, or null when the key is missing or the condition failed.
   */
  updateKey(id: string, patch: KeyPatch, ifStatus?: KeyRecord['status'][]): Promise<KeyRecord | null>;

  /**
   * Appends usage records and adds them to the daily aggregates (keyed by `dayOf(record)`).
   * Idempotent per requestId: a record already stored is neither stored nor counted again.
   */
  insertUsage(records: UsageRecord[], dayOf: (r: UsageRecord) => string): Promise<void>;
  /** Request records of one user, newest first. */
  listUsage(discordId: string, limit: number): Promise<UsageRecord[]>;
  /** Daily aggregates within [fromDay, toDay] (inclusive, `YYYY-MM-DD`), optionally for one user. */
  dailyUsage(filter: { discordId?: string; fromDay: string; toDay: string }): Promise<DailyUsage[]>;
  /** Users with the most charged tokens on `day`. */
  topUsers(day: string, limit: number): Promise<Array<{ discordId: string; requests: number; chargedTokens: number }>>;
  /** Totals per model on `day` over all users (`users`: how many used the model), sorted by model. */
  modelTotals(day: string): Promise<
    Array<{
      model: string;
      users: number;
      requests: number;
      promptTokens: number;
      completionTokens: number;
      chargedTokens: number;
    }>
  >;
  /**
   * Deletes request records created before `before`, in batches that leave room for other work.
   * Returns how many. Aggregates stay.
   */
  purgeUsage(before: Date): Promise<number>;

  /** Append-only: there is no update or delete of audit entries. */
  appendAudit(entry: AuditEntry): Promise<void>;
  /** Newest first. */
  listAudit(filter: { target?: string; limit: number }): Promise<AuditEntry[]>;

  /** Throws when the backing database cannot answer. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

export interface RateDecision {
  allowed: boolean;
  limit: number;
  remaining: number;
  /** Milliseconds until the window frees capacity again. */
  resetMs: number;
}

/** Requests per minute per subject (fixed one-minute windows). */
export interface RateLimiter {
  consume(subject: string, perMinute: number): Promise<RateDecision>;
}

/** A cap on requests in flight per subject, as leases that expire so a crashed process cannot leak slots. */
export interface ConcurrencyLimiter {
  /** Takes a slot for `leaseId` if fewer than `max` are held. */
  acquire(subject: string, leaseId: string, max: number, ttlMs: number): Promise<{ ok: boolean; active: number }>;
  release(subject: string, leaseId: string): Promise<void>;
}

export interface BudgetReservation {
  ok: boolean;
  /** Tokens reserved (0 when refused). Between `min` and `max` of the request. */
  granted: number;
  /** Tokens used + reserved on the day after this call. */
  used: number;
  limit: number;
}

/**
 * Daily token budget per subject with reserve-then-settle. Atomic: concurrent reservations never
 * take the used total past the limit.
 */
export interface TokenBudget {
  /**
   * Reserves as much of `max` as fits under `limit`, but refuses when less than `min` fits.
   * `requestId` identifies the reservation for `settle`.
   */
  reserve(args: {
    subject: string;
    day: string;
    requestId: string;
    min: number;
    max: number;
    limit: number;
  }): Promise<BudgetReservation>;
  /**
   * Replaces the reservation of `requestId` by `actual`. Idempotent: a second settle of the same
   * request changes nothing, and so does settling a reservation that is not held (never made,
   * already settled, or lost with the store): no marker of settled requests is kept.
   */
  settle(args: { subject: string; day: string; requestId: string; actual: number }): Promise<{ used: number }>;
  /** Tokens used + reserved on `day`. */
  used(subject: string, day: string): Promise<number>;
}

/** A budget that can take in spend another limiter admitted: what a failure policy replays onto its store. */
export interface ChargeableTokenBudget extends TokenBudget {
  /**
   * Adds `actual` spent elsewhere (e.g. admitted by an insurance limiter while this one was
   * unreachable), at most once per subject, day and `requestId`, whatever the limit. `at` (epoch ms)
   * is when it was spent: a ledger rebuilt from the usage records after that counts it already and
   * is left as it is. Returns the day's used total.
   */
  charge(args: {
    subject: string;
    day: string;
    requestId: string;
    actual: number;
    at: number;
  }): Promise<{ used: number }>;
}

/** Tells every replica that a key's record changed, so in-process caches drop it. */
export interface KeyEvents {
  publish(keyHash: string): Promise<void>;
  subscribe(onChange: (keyHash: string) => void): Promise<void>;
  close(): Promise<void>;
}

/** A response from an upstream provider, body not yet read. */
export interface UpstreamResponse {
  status: number;
  headers: Record<string, string>;
  /**
   * Raw body bytes as they arrive. The body must be consumed once, by iterating this or by `read`,
   * or cancelled. Iteration throws an error named `AbortError` once the call is aborted.
   */
  body: AsyncIterable<Uint8Array>;
  /** The whole body; past `limit` bytes, rejects with `UpstreamUnavailableError` and drops the rest. */
  read(limit: number): Promise<Buffer>;
  /** Releases the connection without reading the rest of the body. */
  cancel(): void;
}

export interface UpstreamCall {
  /** Configured upstream name. */
  upstream: string;
  /** Path under the upstream's base URL, e.g. `/chat/completions`. */
  path: string;
  method: 'GET' | 'POST';
  body?: unknown;
  requestId: string;
  /** Aborting it stops the call, waiting for headers or reading the body. */
  cancellation: Cancellation;
}

/**
 * Sends one request to one upstream. Throws `UpstreamUnavailableError` on connect failure and
 * `UpstreamTimeoutError` when the first byte does not come in time; any HTTP status is returned.
 */
export interface Upstream {
  send(call: UpstreamCall): Promise<UpstreamResponse>;
  close(): Promise<void>;
}

/** Counts tokens the way the upstream models do (close enough to reserve budget before a call). */
export interface Tokenizer {
  count(text: string): number;
}
