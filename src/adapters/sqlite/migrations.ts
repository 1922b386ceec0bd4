// Schema migrations for the embedded store, tracked with `PRAGMA user_version` (= number of
// migrations applied). Append only: never edit a shipped migration, add the next one.
import type { Database } from 'better-sqlite3';

/**
 * Times are INTEGER epoch milliseconds (Date round-trips with ms precision and sorts numerically).
 * No foreign keys between tables on purpose: the Mongo adapter has none either, and a usage batch
 * flushed just after a user was deleted must not fail as a whole.
 */
export const migrations: readonly string[] = [
  `
  CREATE TABLE users (
    discord_id TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL,
    banned_at INTEGER,
    ban_reason TEXT
  ) STRICT;

  CREATE TABLE keys (
    id TEXT PRIMARY KEY,
    hash TEXT NOT NULL,
    prefix TEXT NOT NULL,
    discord_id TEXT NOT NULL,
    tier TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('active', 'suspended', 'revoked')),
    status_reason TEXT,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    revoked_at INTEGER
  ) STRICT;
  CREATE UNIQUE INDEX keys_hash ON keys (hash);
  -- One live key per Discord user, enforced here so racing writers cannot both win.
  CREATE UNIQUE INDEX keys_one_live_per_user ON keys (discord_id) WHERE status != 'revoked';
  CREATE INDEX keys_by_user ON keys (discord_id, created_at);
  CREATE INDEX keys_by_status ON keys (status, created_at);

  CREATE TABLE usage_requests (
    request_id TEXT PRIMARY KEY,
    key_id TEXT NOT NULL,
    discord_id TEXT NOT NULL,
    model TEXT NOT NULL,
    upstream TEXT,
    endpoint TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    charged_tokens INTEGER NOT NULL,
    estimated INTEGER NOT NULL,
    status TEXT NOT NULL,
    http_status INTEGER NOT NULL,
    latency_ms INTEGER NOT NULL,
    stream INTEGER NOT NULL,
    created_at INTEGER NOT NULL
  ) STRICT;
  CREATE INDEX usage_requests_by_user ON usage_requests (discord_id, created_at);
  CREATE INDEX usage_requests_by_time ON usage_requests (created_at);

  CREATE TABLE usage_daily (
    day TEXT NOT NULL,
    discord_id TEXT NOT NULL,
    model TEXT NOT NULL,
    requests INTEGER NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    charged_tokens INTEGER NOT NULL,
    PRIMARY KEY (day, discord_id, model)
  ) STRICT, WITHOUT ROWID;
  CREATE INDEX usage_daily_by_user ON usage_daily (discord_id, day);

  -- seq keeps insertion order for entries with the same timestamp.
  CREATE TABLE audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    reason TEXT,
    meta TEXT
  ) STRICT;
  CREATE INDEX audit_by_target ON audit (target, at);
  CREATE INDEX audit_by_time ON audit (at);
  -- The audit log is append-only even for code that bypasses the Store port.
  CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
  CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
  `,
];

/** Schema version this code writes and understands. */
export const SCHEMA_VERSION = migrations.length;

function userVersion(db: Database): number {
  return db.pragma('user_version', { simple: true }) as number;
}

/**
 * Brings the schema up to `SCHEMA_VERSION` in one immediate transaction (a second process opening
 * the same file waits instead of migrating twice). Refuses a schema newer than this code.
 */
export function migrate(db: Database): void {
  db.transaction(() => {
    const current = userVersion(db);
    if (current > SCHEMA_VERSION) {
      throw new Error(
        `SQLite database schema version ${current} is newer than this Guildgate supports (${SCHEMA_VERSION}); ` +
          'upgrade Guildgate or restore a matching backup',
      );
    }
    for (let v = current; v < SCHEMA_VERSION; v++) db.exec(migrations[v]!);
    if (current !== SCHEMA_VERSION) db.pragma(`user_version = ${SCHEMA_VERSION}`);
  }).immediate();
}
