// The Store contract on a real SQLite file, plus what only the SQLite adapter promises:
// migrations, WAL, durability across reopen, refusing a newer schema, database-level invariants.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SCHEMA_VERSION } from '../../src/adapters/sqlite/migrations.js';
import { SqliteStore } from '../../src/adapters/sqlite/sqlite-store.js';
import { newId } from '../../src/domain/ids.js';
import { generateKey } from '../../src/domain/keys.js';
import type { KeyRecord } from '../../src/domain/types.js';
import { runStoreContract } from './store.contract.js';

const freshDir = (): string => mkdtempSync(join(tmpdir(), 'guildgate-sqlite-'));

runStoreContract('sqlite', async () => {
  const dir = freshDir();
  const store = SqliteStore.open(join(dir, 'guildgate.db'));
  return {
    store,
    cleanup: async () => {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
});

function key(discordId: string): KeyRecord {
  const { hash, prefix } = generateKey();
  return {
    id: newId('key'),
    hash,
    prefix,
    discordId,
    tier: 'free',
    status: 'active',
    statusReason: null,
    createdAt: new Date('2024-05-01T00:00:00.000Z'),
    expiresAt: null,
    revokedAt: null,
  };
}

describe('SqliteStore specifics', () => {
  let dir: string;
  let file: string;
  const opened: Array<{ close(): unknown }> = [];
  /** A second, raw connection to the same file, to look under the adapter. */
  const raw = (): Database.Database => {
    const db = new Database(file);
    opened.push(db);
    return db;
  };
  const open = (): SqliteStore => {
    const store = SqliteStore.open(file);
    opened.push(store);
    return store;
  };

  beforeEach(() => {
    dir = freshDir();
    file = join(dir, 'nested', 'deeper', 'guildgate.db');
  });

  afterEach(async () => {
    for (const c of opened.splice(0)) await c.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('creates the parent directory, enables WAL and records the schema version', () => {
    open();
    const db = raw();
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(db.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
    expect(SCHEMA_VERSION).toBeGreaterThan(0);
  });

  it('keeps data across close and reopen, and reopening does not migrate again', async () => {
    const first = open();
    const user = await first.ensureUser('123456789012345678', new Date('2024-01-01T00:00:00.000Z'));
    const k = key(user.discordId);
    await first.insertKey(k);
    await first.close();

    const second = open();
    expect(await second.getUser(user.discordId)).toEqual(user);
    expect(await second.getKeyById(k.id)).toEqual(k);
    await second.close();

    // A third open on an up-to-date schema is a no-op for migrations (re-running them would fail on CREATE TABLE).
    const third = open();
    expect(await third.getKeyByHash(k.hash)).toEqual(k);
    expect(raw().pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
  });

  it('refuses a database written by a newer schema', async () => {
    await open().close();
    const db = raw();
    db.pragma(`user_version = ${SCHEMA_VERSION + 1}`);
    db.close();
    expect(() => SqliteStore.open(file)).toThrow(/schema version \d+ is newer than this Guildgate supports/);
  });

  it('works in memory', async () => {
    const store = SqliteStore.open(':memory:');
    opened.push(store);
    await store.ensureUser('123456789012345678', new Date());
    expect(await store.getUser('123456789012345678')).not.toBeNull();
  });

  it('rejects calls after close', async () => {
    const store = open();
    await store.close();
    await expect(store.ping()).rejects.toThrow();
  });

  it('enforces one live key per user in the database itself, not only in the adapter', async () => {
    const store = open();
    await store.insertKey(key('123456789012345678'));
    const second = key('123456789012345678');
    const insert = raw().prepare(
      `INSERT INTO keys (id, hash, prefix, discord_id, tier, status, created_at)
       VALUES (?, ?, ?, ?, 'free', ?, 0)`,
    );
    expect(() => insert.run(second.id, second.hash, second.prefix, second.discordId, 'suspended')).toThrow(/UNIQUE/);
    expect(() => insert.run(second.id, second.hash, second.prefix, second.discordId, 'revoked')).not.toThrow();
  });

  it('keeps the audit log append-only even for raw SQL', async () => {
    const store = open();
    await store.appendAudit({
      id: newId('aud'),
      at: new Date(),
      actor: 'cli',
      action: 'key.revoke',
      target: 'key_x',
      reason: null,
      meta: null,
    });
    const db = raw();
    expect(() => db.exec(`UPDATE audit SET actor = 'someone else'`)).toThrow(/append-only/);
    expect(() => db.exec('DELETE FROM audit')).toThrow(/append-only/);
    expect(await store.listAudit({ limit: 10 })).toHaveLength(1);
  });
});
