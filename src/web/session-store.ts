// express-session's store for deployments without Redis: a `sessions` table in the embedded SQLite
// file. Created here rather than by the store's migrations: sessions belong to the web alone, and a
// relay without the web never has the table.
import Database from 'better-sqlite3';
import session, { type SessionData } from 'express-session';

/**
 * Each statement waits this long for a lock held elsewhere, sleeping on the event loop; longer waits
 * happen between attempts (see #run), with the event loop free, as in the SQLite store.
 */
const BUSY_TIMEOUT_MS = 20;
/** Opening (creating the table) may block this long: nothing is served yet. */
const OPEN_BUSY_TIMEOUT_MS = 5_000;
const BUSY_WAIT_MS = 5_000;
const PRUNE_INTERVAL_MS = 15 * 60_000;

export interface SqliteSessionStoreOptions {
  /**
   * True when the SQLite store shares the file: its checkpoint thread checkpoints the WAL for every
   * connection, so this one must not do it on commit, on the event loop. False (a file of sessions
   * alone, the store being MongoDB): SQLite's default autocheckpoint, nobody else would do it.
   */
  checkpointedElsewhere: boolean;
  /** How long a call retries while another connection holds the write lock (default 5 s). */
  busyWaitMs?: number;
}

const isBusy = (err: unknown): boolean => err instanceof Database.SqliteError && err.code.startsWith('SQLITE_BUSY');

type Callback<T = void> = (err?: unknown, value?: T) => void;

export class SqliteSessionStore extends session.Store {
  readonly #db: Database.Database;
  readonly #stmt;
  readonly #pruner: NodeJS.Timeout;

  readonly #busyWaitMs: number;
  #closed = false;

  /** `defaultTtlMs`: lifetime of a session whose cookie has no expiry (express-session always sets one here). */
  constructor(
    file: string,
    private readonly defaultTtlMs: number,
    opts: SqliteSessionStoreOptions,
    private readonly now: () => number = Date.now,
  ) {
    super();
    this.#busyWaitMs = opts.busyWaitMs ?? BUSY_WAIT_MS;
    this.#db = new Database(file, { timeout: OPEN_BUSY_TIMEOUT_MS });
    this.#db.pragma('journal_mode = WAL');
    if (opts.checkpointedElsewhere) this.#db.pragma('wal_autocheckpoint = 0');
    this.#db.exec(`
      CREATE TABLE IF NOT EXISTS sessions (sid TEXT PRIMARY KEY, expires INTEGER NOT NULL, data TEXT NOT NULL) STRICT;
      CREATE INDEX IF NOT EXISTS sessions_by_expiry ON sessions (expires);
    `);
    this.#stmt = {
      get: this.#db.prepare<[string, number], { data: string }>(
        'SELECT data FROM sessions WHERE sid = ? AND expires > ?',
      ),
      set: this.#db.prepare<[string, number, string]>(
        `INSERT INTO sessions (sid, expires, data) VALUES (?, ?, ?)
        ON CONFLICT (sid) DO UPDATE SET expires = excluded.expires, data = excluded.data`,
      ),
      touch: this.#db.prepare<[number, string]>('UPDATE sessions SET expires = ? WHERE sid = ?'),
      destroy: this.#db.prepare<[string]>('DELETE FROM sessions WHERE sid = ?'),
      prune: this.#db.prepare<[number]>('DELETE FROM sessions WHERE expires <= ?'),
    };
    this.prune();
    this.#db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
    this.#pruner = setInterval(() => {
      // A locked file is pruned next time: expired sessions are already invisible to reads.
      try {
        this.prune();
      } catch (err) {
        if (!isBusy(err)) throw err;
      }
    }, PRUNE_INTERVAL_MS).unref();
  }

  #expiry(sess: SessionData): number {
    const at = sess.cookie?.expires ? new Date(sess.cookie.expires).getTime() : Number.NaN;
    return Number.isFinite(at) ? at : this.now() + this.defaultTtlMs;
  }

  /**
   * Runs a statement and reports to express-session's callback style. While another connection
   * holds the lock (the store's usage writer mid-commit, another process), tries again after a
   * pause, up to busyWaitMs, instead of sleeping on the event loop.
   */
  #run<T>(cb: Callback<T> | undefined, work: () => T, started = Date.now(), pause = 5): void {
    let value: T;
    try {
      value = work();
    } catch (err) {
      if (isBusy(err) && !this.#closed && Date.now() - started + pause <= this.#busyWaitMs) {
        setTimeout(() => this.#run(cb, work, started, Math.min(pause * 2, 100)), pause);
        return;
      }
      cb?.(err);
      return;
    }
    cb?.(null, value);
  }

  override get(sid: string, cb: (err: unknown, session?: SessionData | null) => void): void {
    this.#run(cb, () => {
      const row = this.#stmt.get.get(sid, this.now());
      return row ? (JSON.parse(row.data) as SessionData) : null;
    });
  }

  override set(sid: string, sess: SessionData, cb?: Callback): void {
    this.#run(cb, () => {
      this.#stmt.set.run(sid, this.#expiry(sess), JSON.stringify(sess));
    });
  }

  override touch(sid: string, sess: SessionData, cb?: Callback): void {
    this.#run(cb, () => {
      this.#stmt.touch.run(this.#expiry(sess), sid);
    });
  }

  override destroy(sid: string, cb?: Callback): void {
    this.#run(cb, () => {
      this.#stmt.destroy.run(sid);
    });
  }

  /** Deletes expired sessions (reads already ignore them). Returns how many. */
  prune(): number {
    return this.#stmt.prune.run(this.now()).changes;
  }

  close(): void {
    this.#closed = true;
    clearInterval(this.#pruner);
    this.#db.close();
  }
}
