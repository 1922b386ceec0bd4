// The SQLite store's usage batches on their writer thread, and its own connection's calls, while
// another connection holds the file's write lock: nobody sleeps on the event loop, a batch commits
// whole or not at all, and what could not be written is reported, never lost or counted twice.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SqliteStore, type SqliteStoreOptions, StoreBusyError } from '../../src/adapters/sqlite/sqlite-store.js';
import { newId } from '../../src/domain/ids.js';
import type { UsageRecord } from '../../src/domain/types.js';
import { usageRecord } from '../helpers/usage.js';

const DAY = '2026-06-01';
const dayOf = () => DAY;

const record = (discordId: string, overrides: Partial<UsageRecord> = {}): UsageRecord =>
  usageRecord({ discordId, chargedTokens: 15, createdAt: new Date(`${DAY}T12:00:00Z`), ...overrides });

let dir: string;
let file: string;
const opened: Array<{ close(): unknown }> = [];
const open = (opts: SqliteStoreOptions = {}): SqliteStore => {
  const store = SqliteStore.open(file, opts);
  opened.push(store);
  return store;
};

/** Another connection holding the write lock until `release()`, as another process would. */
function holdWriteLock(): { release(): void } {
  const db = new Database(file);
  opened.push(db);
  db.exec('BEGIN IMMEDIATE');
  return { release: () => db.exec('COMMIT') };
}

/** Counts event-loop turns of a 10 ms timer while `work` runs: a loop blocked throughout gets one or two. */
async function turnsDuring(work: Promise<unknown>): Promise<number> {
  let turns = 0;
  const ticker = setInterval(() => turns++, 10);
  try {
    await work;
  } finally {
    clearInterval(ticker);
  }
  return turns;
}

const requests = async (store: SqliteStore, user: string) => (await store.listUsage(user, 1_000)).length;
const dailyRequests = async (store: SqliteStore, user: string) =>
  (await store.dailyUsage({ discordId: user, fromDay: DAY, toDay: DAY })).reduce((n, d) => n + d.requests, 0);

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'gg-sqlite-writer-'));
  file = join(dir, 'guildgate.db');
});
afterEach(async () => {
  for (const c of opened.splice(0).reverse()) await c.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('usage batches on the writer thread', () => {
  it('wait for a lock held elsewhere with the event loop free, then commit', async () => {
    const store = open();
    const lock = holdWriteLock();
    setTimeout(() => lock.release(), 400);
    const turns = await turnsDuring(store.insertUsage([record('u1'), record('u1'), record('u2')], dayOf));
    // Waiting on this thread would have blocked the ticker for the whole 400 ms.
    expect(turns).toBeGreaterThan(10);
    expect(await requests(store, 'u1')).toBe(2);
    expect(await dailyRequests(store, 'u1')).toBe(2);
  });

  it('fail with SQLITE_BUSY past the thread busy timeout, commit nothing, and write each record once on retry', async () => {
    const store = open({ writerBusyTimeoutMs: 100 });
    const batch = [record('u1'), record('u1'), record('u2')];
    const lock = holdWriteLock();
    await expect(store.insertUsage(batch, dayOf)).rejects.toMatchObject({ code: 'SQLITE_BUSY' });
    await expect(store.insertUsage(batch, dayOf)).rejects.toBeInstanceOf(Database.SqliteError);
    lock.release();
    expect(await requests(store, 'u1')).toBe(0);
    // The recorder retries the same batch, and later batches may repeat records: counted once.
    await store.insertUsage(batch, dayOf);
    await store.insertUsage([...batch, record('u1')], dayOf);
    expect(await requests(store, 'u1')).toBe(3);
    expect(await dailyRequests(store, 'u1')).toBe(3);
    expect(await dailyRequests(store, 'u2')).toBe(1);
  });

  it('roll a batch back whole when one record fails, with the database error passed on', async () => {
    const store = open();
    await store.insertUsage([record('u1')], dayOf);
    // STRICT table: a string where an integer goes fails in the middle of the batch.
    const bad = record('u1', { httpStatus: 'oops' as unknown as number });
    const rejected = store.insertUsage([record('u1'), record('u1'), bad, record('u1')], dayOf);
    await expect(rejected).rejects.toBeInstanceOf(Database.SqliteError);
    await expect(rejected).rejects.toMatchObject({ code: expect.stringMatching(/^SQLITE_CONSTRAINT/) });
    expect(await requests(store, 'u1')).toBe(1);
    expect(await dailyRequests(store, 'u1')).toBe(1);
  });

  it('finish the batches already sent when the store closes, and refuse batches after', async () => {
    const store = open();
    const batches = Array.from({ length: 5 }, (_, b) =>
      Array.from({ length: 100 }, (_, i) => record(`u${(b * 100 + i) % 7}`)),
    );
    const writes = batches.map((batch) => store.insertUsage(batch, dayOf));
    await store.close();
    await Promise.all(writes);
    await expect(store.insertUsage([record('u1')], dayOf)).rejects.toThrow(/closed/);
    const reopened = open();
    let stored = 0;
    for (let u = 0; u < 7; u++) stored += await requests(reopened, `u${u}`);
    expect(stored).toBe(500);
  });

  it('are written on the store connection itself in memory, where no thread can see the database', async () => {
    const store = SqliteStore.open(':memory:');
    opened.push(store);
    const a = record('u1');
    await store.insertUsage([a, record('u1'), a], dayOf);
    expect(await requests(store, 'u1')).toBe(2);
    expect(await dailyRequests(store, 'u1')).toBe(2);
  });
});

describe("the store connection's own calls while another connection holds the write lock", () => {
  const key = (discordId: string) => ({
    id: newId('key'),
    hash: newId('req'),
    prefix: 'gg_test',
    discordId,
    tier: 'free',
    status: 'active' as const,
    statusReason: null,
    createdAt: new Date(),
    expiresAt: null,
    revokedAt: null,
  });

  it('wait between short attempts, with the event loop free, and succeed once it is released', async () => {
    const store = open();
    const lock = holdWriteLock();
    setTimeout(() => lock.release(), 400);
    const k = key('u1');
    const turns = await turnsDuring(store.insertKey(k));
    expect(turns).toBeGreaterThan(10);
    expect(await store.getKeyById(k.id)).toEqual(k);
    // Reads never wait for a writer (WAL).
    const again = holdWriteLock();
    expect(await store.getKeyByHash(k.hash)).toEqual(k);
    again.release();
  });

  it('fail with a StoreBusyError saying to retry once they waited busyWaitMs', async () => {
    const store = open({ busyWaitMs: 150 });
    const lock = holdWriteLock();
    const k = key('u1');
    const err = await store.insertKey(k).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StoreBusyError);
    expect(err).toMatchObject({ code: 'store_busy', status: 503, message: expect.stringMatching(/locked.*Retry/) });
    lock.release();
    expect(await store.getKeyById(k.id)).toBeNull();
    await store.insertKey(k);
    expect(await store.getKeyById(k.id)).toEqual(k);
  });
});
