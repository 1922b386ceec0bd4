// The embedded default Store: one SQLite file via better-sqlite3. Reads and the rare interactive
// writes (keys, users, bans, audit) run on this connection, synchronously and fast. What would hold
// up the event loop does not: usage batches are written by a thread of their own (usage-writer.ts),
// WAL checkpoints run on another (checkpoints.ts), and the retention purge deletes in small batches
// that yield in between. Another process holding the write lock (the CLI, a second replica, a
// backup) is waited for with the event loop free; see `busy` below.
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { LiveKeyExistsError, ServiceUnavailableError } from '../../domain/errors.js';
import type { Store } from '../../domain/ports.js';
import type { AuditEntry, DailyUsage, KeyPatch, KeyRecord, KeyStatus, UsageRecord, User } from '../../domain/types.js';
import { type CheckpointOptions, CheckpointWorker } from './checkpoints.js';
import { migrate } from './migrations.js';
import { prepareUsageWrite, type UsageRow as UsageBatchRow, type UsageParams, UsageWriter } from './usage-writer.js';

const DEFAULT_KEY_LIMIT = 100;
/**
 * How long one statement on this connection waits for a lock held elsewhere. SQLite's busy handler
 * sleeps on the calling thread, here the event loop, so it stays short: a longer wait happens in
 * `busy`, between attempts, with the event loop free.
 */
const BUSY_TIMEOUT_MS = 20;
/** How long a call on this connection keeps retrying a locked store before it fails with StoreBusyError. */
const BUSY_WAIT_MS = 5_000;
/** Opening (migrations) and the usage writer thread may block their own thread this long. */
const BLOCKING_BUSY_TIMEOUT_MS = 5_000;
/**
 * Rows per purge statement. Each row touches a page of usage_requests_by_user somewhere in the
 * index, so a batch dirties about this many pages: small enough for a few ms on a multi-GB store.
 */
const PURGE_BATCH_ROWS = 500;
/** SQLite's own default, restored if the checkpoint worker dies. */
const DEFAULT_AUTOCHECKPOINT_PAGES = 1_000;

export interface SqliteStoreOptions {
  /** The WAL checkpoint worker's timing; `false` leaves checkpoints to SQLite (on commit, on this thread). */
  checkpoints?: CheckpointOptions | false;
  /** Rows deleted per statement by purgeUsage. */
  purgeBatchRows?: number;
  /** `false`: write usage batches on this connection, on the event loop (as before the writer thread). */
  writer?: false;
  /** How long a call retries while another process holds the write lock (default 5 s). */
  busyWaitMs?: number;
  /** How long the usage writer thread waits for the write lock before a batch fails (default 5 s). */
  writerBusyTimeoutMs?: number;
}

/**
 * The store stayed locked by another connection for as long as a call was willing to wait. A 503
 * for every face: the API answers it in OpenAI's shape, the web with a retry page.
 */
export class StoreBusyError extends ServiceUnavailableError {
  constructor(waitedMs: number, cause: unknown) {
    super(
      `The SQLite store is locked by another process (still locked after ${waitedMs} ms). Retry shortly.`,
      'store_busy',
      cause,
    );
    this.name = 'StoreBusyError';
  }
}

const isBusy = (err: unknown): boolean => err instanceof Database.SqliteError && err.code.startsWith('SQLITE_BUSY');

interface UserRow {
  discord_id: string;
  created_at: number;
  banned_at: number | null;
  ban_reason: string | null;
}

interface KeyRow {
  id: string;
  hash: string;
  prefix: string;
  discord_id: string;
  tier: string;
  status: KeyStatus;
  status_reason: string | null;
  created_at: number;
  expires_at: number | null;
  revoked_at: number | null;
}

interface UsageRow {
  request_id: string;
  key_id: string;
  discord_id: string;
  model: string;
  upstream: string | null;
  endpoint: UsageRecord['endpoint'];
  prompt_tokens: number;
  completion_tokens: number;
  charged_tokens: number;
  estimated: number;
  status: UsageRecord['status'];
  http_status: number;
  latency_ms: number;
  stream: number;
  created_at: number;
}

interface DailyRow {
  day: string;
  discord_id: string;
  model: string;
  requests: number;
  prompt_tokens: number;
  completion_tokens: number;
  charged_tokens: number;
}

interface AuditRow {
  id: string;
  at: number;
  actor: string;
  action: string;
  target: string;
  reason: string | null;
  meta: string | null;
}

/** In the column order of the usage_requests INSERT. */
function usageParams(r: UsageRecord): UsageParams {
  return [
    r.requestId,
    r.keyId,
    r.discordId,
    r.model,
    r.upstream,
    r.endpoint,
    r.promptTokens,
    r.completionTokens,
    r.chargedTokens,
    r.estimated ? 1 : 0,
    r.status,
    r.httpStatus,
    r.latencyMs,
    r.stream ? 1 : 0,
    r.createdAt.getTime(),
  ];
}

const ms = (d: Date | null): number | null => (d === null ? null : d.getTime());
const date = (n: number | null): Date | null => (n === null ? null : new Date(n));

function toUser(r: UserRow): User {
  return {
    discordId: r.discord_id,
    createdAt: new Date(r.created_at),
    bannedAt: date(r.banned_at),
    banReason: r.ban_reason,
  };
}

function toKey(r: KeyRow): KeyRecord {
  return {
    id: r.id,
    hash: r.hash,
    prefix: r.prefix,
    discordId: r.discord_id,
    tier: r.tier,
    status: r.status,
    statusReason: r.status_reason,
    createdAt: new Date(r.created_at),
    expiresAt: date(r.expires_at),
    revokedAt: date(r.revoked_at),
  };
}

function toUsage(r: UsageRow): UsageRecord {
  return {
    requestId: r.request_id,
    keyId: r.key_id,
    discordId: r.discord_id,
    model: r.model,
    upstream: r.upstream,
    endpoint: r.endpoint,
    promptTokens: r.prompt_tokens,
    completionTokens: r.completion_tokens,
    chargedTokens: r.charged_tokens,
    estimated: r.estimated === 1,
    status: r.status,
    httpStatus: r.http_status,
    latencyMs: r.latency_ms,
    stream: r.stream === 1,
    createdAt: new Date(r.created_at),
  };
}

function toDaily(r: DailyRow): DailyUsage {
  return {
    day: r.day,
    discordId: r.discord_id,
    model: r.model,
    requests: r.requests,
    promptTokens: r.prompt_tokens,
    completionTokens: r.completion_tokens,
    chargedTokens: r.charged_tokens,
  };
}

function toAudit(r: AuditRow): AuditEntry {
  return {
    id: r.id,
    at: new Date(r.at),
    actor: r.actor,
    action: r.action,
    target: r.target,
    reason: r.reason,
    meta: r.meta === null ? null : (JSON.parse(r.meta) as Record<string, unknown>),
  };
}

/** Which unique index a constraint error came from (SQLite names the indexed columns). */
function uniqueViolation(err: unknown, column: string): boolean {
  return (
    err instanceof Database.SqliteError &&
    err.code === 'SQLITE_CONSTRAINT_UNIQUE' &&
    err.message.includes(`keys.${column}`)
  );
}

/** Flag + value pairs so one prepared UPDATE serves every patch shape (flag 0 keeps the column). */
function patchParams(patch: KeyPatch) {
  const has = (v: unknown) => (v === undefined ? 0 : 1);
  return {
    has_tier: has(patch.tier),
    tier: patch.tier ?? null,
    has_status: has(patch.status),
    status: patch.status ?? null,
    has_status_reason: has(patch.statusReason),
    status_reason: patch.statusReason ?? null,
    has_expires_at: has(patch.expiresAt),
    expires_at: ms(patch.expiresAt ?? null),
    has_revoked_at: has(patch.revokedAt),
    revoked_at: ms(patch.revokedAt ?? null),
  };
}

function prepareStatements(db: Database.Database) {
  return {
    ping: db.prepare('SELECT 1'),
    insertUser: db.prepare('INSERT OR IGNORE INTO users (discord_id, created_at) VALUES (?, ?)'),
    getUser: db.prepare<[string], UserRow>('SELECT * FROM users WHERE discord_id = ?'),
    setBan: db.prepare<[number | null, string | null, string], UserRow>(
      'UPDATE users SET banned_at = ?, ban_reason = ? WHERE discord_id = ? RETURNING *',
    ),
    insertKey: db.prepare(
      `INSERT INTO keys (id, hash, prefix, discord_id, tier, status, status_reason, created_at, expires_at, revoked_at)
      VALUES (@id, @hash, @prefix, @discord_id, @tier, @status, @status_reason, @created_at, @expires_at, @revoked_at)`,
    ),
    getKeyById: db.prepare<[string], KeyRow>('SELECT * FROM keys WHERE id = ?'),
    getKeyByHash: db.prepare<[string], KeyRow>('SELECT * FROM keys WHERE hash = ?'),
    // The status condition and the write are one statement, so no other writer can slip in between.
    updateKey: db.prepare<[Record<string, unknown>], KeyRow>(
      `UPDATE keys SET
        tier = CASE WHEN @has_tier THEN @tier ELSE tier END,
        status = CASE WHEN @has_status THEN @status ELSE status END,
        status_reason = CASE WHEN @has_status_reason THEN @status_reason ELSE status_reason END,
        expires_at = CASE WHEN @has_expires_at THEN @expires_at ELSE expires_at END,
        revoked_at = CASE WHEN @has_revoked_at THEN @revoked_at ELSE revoked_at END
      WHERE id = @id AND (@if_status IS NULL OR status IN (SELECT value FROM json_each(@if_status)))
      RETURNING *`,
    ),
    listUsage: db.prepare<[string, number], UsageRow>(
      'SELECT * FROM usage_requests WHERE discord_id = ? ORDER BY created_at DESC, rowid DESC LIMIT ?',
    ),
    dailyAll: db.prepare<[string, string], DailyRow>(
      'SELECT * FROM usage_daily WHERE day BETWEEN ? AND ? ORDER BY day, model, discord_id',
    ),
    dailyOfUser: db.prepare<[string, string, string], DailyRow>(
      'SELECT * FROM usage_daily WHERE discord_id = ? AND day BETWEEN ? AND ? ORDER BY day, model',
    ),
    topUsers: db.prepare<[string, number], { discordId: string; requests: number; chargedTokens: number }>(
      `SELECT discord_id AS discordId, SUM(requests) AS requests, SUM(charged_tokens) AS chargedTokens
      FROM usage_daily WHERE day = ? GROUP BY discord_id ORDER BY chargedTokens DESC, discord_id LIMIT ?`,
    ),
    // Oldest first through usage_requests_by_time, so each batch reads only the rows it deletes.
    purgeBatch: db.prepare<[number, number]>(
      `DELETE FROM usage_requests WHERE rowid IN
        (SELECT rowid FROM usage_requests WHERE created_at < ? ORDER BY created_at LIMIT ?)`,
    ),
    modelTotals: db.prepare<[string], ModelTotals>(
      `SELECT model, COUNT(*) AS users, SUM(requests) AS requests, SUM(prompt_tokens) AS promptTokens,
        SUM(completion_tokens) AS completionTokens, SUM(charged_tokens) AS chargedTokens
      FROM usage_daily WHERE day = ? GROUP BY model ORDER BY model`,
    ),
    deleteKeysOf: db.prepare('DELETE FROM keys WHERE discord_id = ?'),
    deleteRequestsOf: db.prepare('DELETE FROM usage_requests WHERE discord_id = ?'),
    deleteDailyOf: db.prepare('DELETE FROM usage_daily WHERE discord_id = ?'),
    deleteUser: db.prepare('DELETE FROM users WHERE discord_id = ?'),
    appendAudit: db.prepare(
      `INSERT INTO audit (id, at, actor, action, target, reason, meta)
      VALUES (@id, @at, @actor, @action, @target, @reason, @meta)`,
    ),
    auditAll: db.prepare<[number], AuditRow>('SELECT * FROM audit ORDER BY at DESC, seq DESC LIMIT ?'),
    auditOf: db.prepare<[string, number], AuditRow>(
      'SELECT * FROM audit WHERE target = ? ORDER BY at DESC, seq DESC LIMIT ?',
    ),
  };
}

type ModelTotals = Awaited<ReturnType<Store['modelTotals']>>[number];

export class SqliteStore implements Store {
  private readonly db: Database.Database;
  private closing: Promise<void> | null = null;
  private readonly stmt: ReturnType<typeof prepareStatements>;
  private readonly listKeysStmt: Record<
    'all' | 'byUser' | 'byStatus' | 'byUserAndStatus',
    Database.Statement<[Record<string, unknown>], KeyRow>
  >;
  private readonly writeUsage: (rows: UsageBatchRow[]) => void;
  private readonly deleteUserTx: (discordId: string) => { keys: number; usageRecords: number };

  /**
   * Opens (creating if needed) and migrates the database at `file`; `':memory:'` for a throwaway
   * store (no WAL, so no checkpoint worker; and no usage writer thread, which could not see this
   * connection's database: usage batches are written here, on the event loop).
   */
  static open(file: string, opts: SqliteStoreOptions = {}): SqliteStore {
    const inMemory = file === ':memory:';
    if (!inMemory) mkdirSync(dirname(file), { recursive: true });
    // Opening may wait for another process's lock (a second replica migrating): nothing is served yet.
    const db = new Database(file, { timeout: BLOCKING_BUSY_TIMEOUT_MS });
    let checkpoints: CheckpointWorker | null = null;
    let writer: UsageWriter | null = null;
    try {
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = NORMAL');
      db.pragma('foreign_keys = ON');
      migrate(db);
      db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
      const checkpointOpts = inMemory ? false : (opts.checkpoints ?? {});
      if (!inMemory && opts.writer !== false) {
        writer = UsageWriter.start(file, {
          busyTimeoutMs: opts.writerBusyTimeoutMs ?? BLOCKING_BUSY_TIMEOUT_MS,
          autocheckpoint: checkpointOpts === false ? DEFAULT_AUTOCHECKPOINT_PAGES : 0,
        });
      }
      if (checkpointOpts !== false) {
        // A commit no longer copies the WAL back into the database on this thread: the worker does.
        db.pragma('wal_autocheckpoint = 0');
        checkpoints = CheckpointWorker.start(file, checkpointOpts, () => {
          // Without the worker the WAL would grow without bound: checkpoint on commit again.
          if (db.open) db.pragma(`wal_autocheckpoint = ${DEFAULT_AUTOCHECKPOINT_PAGES}`);
          writer?.setAutocheckpoint(DEFAULT_AUTOCHECKPOINT_PAGES);
        });
      }
      return new SqliteStore(db, {
        checkpoints,
        writer,
        purgeBatchRows: opts.purgeBatchRows ?? PURGE_BATCH_ROWS,
        busyWaitMs: opts.busyWaitMs ?? BUSY_WAIT_MS,
      });
    } catch (err) {
      void writer?.stop();
      void checkpoints?.stop();
      db.close();
      throw err;
    }
  }

  private readonly checkpoints: CheckpointWorker | null;
  private readonly writer: UsageWriter | null;
  private readonly purgeBatchRows: number;
  private readonly busyWaitMs: number;

  private constructor(
    db: Database.Database,
    parts: {
      checkpoints: CheckpointWorker | null;
      writer: UsageWriter | null;
      purgeBatchRows: number;
      busyWaitMs: number;
    },
  ) {
    this.db = db;
    this.checkpoints = parts.checkpoints;
    this.writer = parts.writer;
    this.purgeBatchRows = parts.purgeBatchRows;
    this.busyWaitMs = parts.busyWaitMs;
    this.stmt = prepareStatements(db);
    this.writeUsage = prepareUsageWrite(db);

    // One statement per filter shape, so each can use its own index.
    const listKeys = (where: string) =>
      db.prepare<[Record<string, unknown>], KeyRow>(
        `SELECT * FROM keys ${where} ORDER BY created_at DESC, rowid DESC LIMIT @limit`,
      );
    this.listKeysStmt = {
      all: listKeys(''),
      byUser: listKeys('WHERE discord_id = @discord_id'),
      byStatus: listKeys('WHERE status = @status'),
      byUserAndStatus: listKeys('WHERE discord_id = @discord_id AND status = @status'),
    };

    this.deleteUserTx = db.transaction((discordId: string) => {
      const keys = this.stmt.deleteKeysOf.run(discordId).changes;
      const usageRecords = this.stmt.deleteRequestsOf.run(discordId).changes;
      this.stmt.deleteDailyOf.run(discordId);
      this.stmt.deleteUser.run(discordId);
      return { keys, usageRecords };
    }).immediate;
  }

  /**
   * Runs `work` on this connection; while another connection holds the lock it needs, tries again
   * after a pause, with the event loop free, for up to busyWaitMs, then throws StoreBusyError. Each
   * attempt blocks the event loop for at most BUSY_TIMEOUT_MS. `work` must be safe to repeat after
   * SQLITE_BUSY: a single statement or a transaction (rolled back when it throws).
   */
  private async busy<T>(work: () => T): Promise<T> {
    const started = Date.now();
    for (let pause = 5; ; pause = Math.min(pause * 2, 100)) {
      try {
        return work();
      } catch (err) {
        if (!isBusy(err) || this.closing !== null) throw err;
        const waited = Date.now() - started;
        if (waited + pause > this.busyWaitMs) throw new StoreBusyError(waited, err);
      }
      await new Promise((resolve) => setTimeout(resolve, pause));
    }
  }

  // Every call goes through `busy`: reads, too, can meet a lock (another process recovering the WAL).
  async ensureUser(discordId: string, now: Date): Promise<User> {
    return this.busy(() => {
      this.stmt.insertUser.run(discordId, now.getTime());
      return toUser(this.stmt.getUser.get(discordId)!);
    });
  }

  async getUser(discordId: string): Promise<User | null> {
    const row = await this.busy(() => this.stmt.getUser.get(discordId));
    return row ? toUser(row) : null;
  }

  async setUserBan(discordId: string, ban: { at: Date; reason: string } | null): Promise<User | null> {
    const row = await this.busy(() =>
      this.stmt.setBan.get(ban ? ban.at.getTime() : null, ban ? ban.reason : null, discordId),
    );
    return row ? toUser(row) : null;
  }

  async deleteUser(discordId: string): Promise<{ keys: number; usageRecords: number }> {
    return this.busy(() => this.deleteUserTx(discordId));
  }

  async insertKey(key: KeyRecord): Promise<void> {
    try {
      await this.busy(() =>
        this.stmt.insertKey.run({
          id: key.id,
          hash: key.hash,
          prefix: key.prefix,
          discord_id: key.discordId,
          tier: key.tier,
          status: key.status,
          status_reason: key.statusReason,
          created_at: key.createdAt.getTime(),
          expires_at: ms(key.expiresAt),
          revoked_at: ms(key.revokedAt),
        }),
      );
    } catch (err) {
      if (uniqueViolation(err, 'discord_id')) throw new LiveKeyExistsError(key.discordId);
      if (uniqueViolation(err, 'hash')) throw new Error('A key with the same hash is already stored', { cause: err });
      throw err;
    }
  }

  async getKeyById(id: string): Promise<KeyRecord | null> {
    const row = await this.busy(() => this.stmt.getKeyById.get(id));
    return row ? toKey(row) : null;
  }

  async getKeyByHash(hash: string): Promise<KeyRecord | null> {
    const row = await this.busy(() => this.stmt.getKeyByHash.get(hash));
    return row ? toKey(row) : null;
  }

  async listKeys(filter: { discordId?: string; status?: KeyStatus; limit?: number }): Promise<KeyRecord[]> {
    const { discordId, status } = filter;
    const s = this.listKeysStmt;
    const stmt =
      discordId !== undefined
        ? status !== undefined
          ? s.byUserAndStatus
          : s.byUser
        : status !== undefined
          ? s.byStatus
          : s.all;
    const params: Record<string, unknown> = { limit: filter.limit ?? DEFAULT_KEY_LIMIT };
    if (discordId !== undefined) params.discord_id = discordId;
    if (status !== undefined) params.status = status;
    return (await this.busy(() => stmt.all(params))).map(toKey);
  }

  async updateKey(id: string, patch: KeyPatch, ifStatus?: KeyStatus[]): Promise<KeyRecord | null> {
    try {
      const row = await this.busy(() =>
        this.stmt.updateKey.get({
          id,
          if_status: ifStatus === undefined ? null : JSON.stringify(ifStatus),
          ...patchParams(patch),
        }),
      );
      return row ? toKey(row) : null;
    } catch (err) {
      if (uniqueViolation(err, 'discord_id')) {
        // Only a status change back to live can trip the index; the key exists, so read its owner.
        throw new LiveKeyExistsError(this.stmt.getKeyById.get(id)!.discord_id);
      }
      throw err;
    }
  }

  /**
   * On the writer thread for a file (the batch is cloned to it, the event loop waits for nothing);
   * here, on this connection, in memory or if the thread died. Either way one transaction: on failure
   * nothing of the batch is stored and the caller keeps it.
   */
  async insertUsage(records: UsageRecord[], dayOf: (r: UsageRecord) => string): Promise<void> {
    if (records.length === 0) return;
    // The day is computed here: `dayOf` is a function and cannot be sent to the thread.
    const rows = records.map((r): UsageBatchRow => ({ params: usageParams(r), day: dayOf(r) }));
    if (this.writer && !this.writer.gone) {
      try {
        return await this.writer.write(rows);
      } catch (err) {
        if (!this.writer.gone) throw err;
        // The thread died with the batch: written here instead (a record it did commit is ignored).
      }
    }
    await this.busy(() => this.writeUsage(rows));
  }

  async listUsage(discordId: string, limit: number): Promise<UsageRecord[]> {
    return (await this.busy(() => this.stmt.listUsage.all(discordId, limit))).map(toUsage);
  }

  async dailyUsage(filter: { discordId?: string; fromDay: string; toDay: string }): Promise<DailyUsage[]> {
    const rows = await this.busy(() =>
      filter.discordId === undefined
        ? this.stmt.dailyAll.all(filter.fromDay, filter.toDay)
        : this.stmt.dailyOfUser.all(filter.discordId, filter.fromDay, filter.toDay),
    );
    return rows.map(toDaily);
  }

  async topUsers(
    day: string,
    limit: number,
  ): Promise<Array<{ discordId: string; requests: number; chargedTokens: number }>> {
    return this.busy(() => this.stmt.topUsers.all(day, limit));
  }

  async modelTotals(day: string): Promise<ModelTotals[]> {
    return this.busy(() => this.stmt.modelTotals.all(day));
  }

  /**
   * One short DELETE per batch, each its own transaction, with the event loop free in between: a
   * million expired rows must not hold up requests for seconds. Stops early if the store closes.
   */
  async purgeUsage(before: Date): Promise<number> {
    const cutoff = before.getTime();
    let removed = 0;
    while (this.closing === null) {
      const n = (await this.busy(() => this.stmt.purgeBatch.run(cutoff, this.purgeBatchRows))).changes;
      removed += n;
      if (n < this.purgeBatchRows) break;
      // Back-to-back batches would outrun the checkpointer and grow the WAL by every page each one
      // rewrites (1 GB for a million rows). Waiting for a checkpoint keeps it about one batch long.
      if (this.checkpoints) await this.checkpoints.checkpoint();
      else await new Promise<void>((resolve) => setImmediate(resolve));
    }
    return removed;
  }

  async appendAudit(entry: AuditEntry): Promise<void> {
    await this.busy(() =>
      this.stmt.appendAudit.run({
        id: entry.id,
        at: entry.at.getTime(),
        actor: entry.actor,
        action: entry.action,
        target: entry.target,
        reason: entry.reason,
        meta: entry.meta === null ? null : JSON.stringify(entry.meta),
      }),
    );
  }

  async listAudit(filter: { target?: string; limit: number }): Promise<AuditEntry[]> {
    const rows = await this.busy(() =>
      filter.target === undefined
        ? this.stmt.auditAll.all(filter.limit)
        : this.stmt.auditOf.all(filter.target, filter.limit),
    );
    return rows.map(toAudit);
  }

  async ping(): Promise<void> {
    await this.busy(() => this.stmt.ping.get());
  }

  async close(): Promise<void> {
    this.closing ??= (async () => {
      // The threads' connections go first, so this one is the last and SQLite removes the WAL file.
      // The writer finishes the batches already posted before it stops (services flush usage first).
      await this.writer?.stop();
      await this.checkpoints?.stop();
      this.db.close();
    })();
    return this.closing;
  }
}
