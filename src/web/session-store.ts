// express-session's store for deployments without Redis: a `sessions` table in the embedded SQLite
// file. Created here rather than by the store's migrations: sessions belong to the web alone, and a
// relay without the web never has the table.
import Database from 'better-sqlite3';
import session, { type SessionData } from 'express-session';

const BUSY_TIMEOUT_MS = 5_000;
const PRUNE_INTERVAL_MS = 15 * 60_000;

type Callback<T = void> = (err?: unknown, value?: T) => void;

export class SqliteSessionStore extends session.Store {
  readonly #db: Database.Database;
  readonly #stmt;
  readonly #pruner: NodeJS.Timeout;

  /** `defaultTtlMs`: lifetime of a session whose cookie has no expiry (express-session always sets one here). */
  constructor(
    file: string,
    private readonly defaultTtlMs: number,
    private readonly now: () => number = Date.now,
  ) {
    super();
    this.#db = new Database(file, { timeout: BUSY_TIMEOUT_MS });
    this.#db.pragma('journal_mode = WAL');
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
    this.#pruner = setInterval(() => this.prune(), PRUNE_INTERVAL_MS).unref();
  }

  #expiry(sess: SessionData): number {
    const at = sess.cookie?.expires ? new Date(sess.cookie.expires).getTime() : Number.NaN;
    return Number.isFinite(at) ? at : this.now() + this.defaultTtlMs;
  }

  /** Runs a statement and reports to express-session's callback style. */
  #run<T>(cb: Callback<T> | undefined, work: () => T): void {
    let value: T;
    try {
      value = work();
    } catch (err) {
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
    clearInterval(this.#pruner);
    this.#db.close();
  }
}
