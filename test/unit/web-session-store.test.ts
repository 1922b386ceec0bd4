// The SQLite session store: round trip, expiry by the cookie's expiry, touch, destroy, prune; who
// checkpoints its WAL; waiting for a lock held elsewhere without holding up the event loop.
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { SessionData } from 'express-session';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SqliteSessionStore } from '../../src/web/session-store.js';

let dir: string;
let now: number;
let store: SqliteSessionStore;
let file: string;
const others: Array<{ close(): unknown }> = [];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'gg-sessions-'));
  file = join(dir, 'guildgate.db');
  now = Date.parse('2026-11-30T12:00:00Z');
  store = new SqliteSessionStore(file, 60_000, { checkpointedElsewhere: false }, () => now);
});
afterEach(() => {
  store.close();
  for (const o of others.splice(0)) o.close();
  rmSync(dir, { recursive: true, force: true });
});

const session = (expiresInMs: number, csrf = 'token') =>
  ({ cookie: { expires: new Date(now + expiresInMs), originalMaxAge: expiresInMs }, csrf }) as unknown as SessionData;

function get(sid: string): Promise<SessionData | null | undefined> {
  return new Promise((resolve, reject) => store.get(sid, (err, s) => (err ? reject(err) : resolve(s))));
}

function call(fn: (cb: (err?: unknown) => void) => void): Promise<void> {
  return new Promise((resolve, reject) => fn((err) => (err ? reject(err) : resolve())));
}

it('stores, reads, replaces and destroys sessions', async () => {
  await call((cb) => store.set('a', session(10_000), cb));
  expect(await get('a')).toMatchObject({ csrf: 'token' });
  await call((cb) => store.set('a', session(10_000, 'other'), cb));
  expect(await get('a')).toMatchObject({ csrf: 'other' });
  expect(await get('missing')).toBeNull();
  await call((cb) => store.destroy('a', cb));
  expect(await get('a')).toBeNull();
});

it('forgets a session at its cookie expiry; touch moves the expiry; prune deletes the expired', async () => {
  await call((cb) => store.set('short', session(1_000), cb));
  await call((cb) => store.set('touched', session(1_000), cb));
  await call((cb) => store.touch('touched', session(5_000), cb));
  now += 2_000;
  expect(await get('short')).toBeNull();
  expect(await get('touched')).not.toBeNull();
  expect(store.prune()).toBe(1);
  now += 10_000;
  expect(store.prune()).toBe(1);
});

describe('WAL checkpoints', () => {
  const walBytes = () => (existsSync(`${file}-wal`) ? statSync(`${file}-wal`).size : 0);
  // 80 sessions of 100 kB: about 2,000 WAL pages, twice SQLite's default autocheckpoint (1,000 pages).
  const writeMany = async (s: SqliteSessionStore) => {
    const big = 'x'.repeat(100_000);
    for (let i = 0; i < 80; i++) {
      await call((cb) => s.set(`big${i}`, { ...session(10_000), csrf: big } as SessionData, cb));
    }
  };

  it("leaves them to the SQLite store's checkpoint thread when it shares the file", async () => {
    const shared = new SqliteSessionStore(join(dir, 'shared.db'), 60_000, { checkpointedElsewhere: true }, () => now);
    others.push(shared);
    file = join(dir, 'shared.db');
    await writeMany(shared);
    // No commit copied the WAL back: it holds every page written.
    expect(walBytes()).toBeGreaterThan(7_000_000);
  });

  it('checkpoints on commit (SQLite default) when the file holds the sessions alone', async () => {
    await writeMany(store);
    // Reset to its start after each checkpoint: about the 1,000-page bound plus one session.
    expect(walBytes()).toBeLessThan(5_000_000);
    expect(walBytes()).toBeGreaterThan(0);
  });
});

describe('another connection holding the write lock', () => {
  const lockFor = (ms: number) => {
    const holder = new Database(file);
    others.push(holder);
    holder.exec('BEGIN IMMEDIATE');
    setTimeout(() => holder.exec('COMMIT'), ms);
  };

  it('waits for it with the event loop free, then writes', async () => {
    lockFor(400);
    let turns = 0;
    const ticker = setInterval(() => turns++, 10);
    const t0 = Date.now();
    await call((cb) => store.set('a', session(10_000, 'after the lock'), cb));
    clearInterval(ticker);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(350);
    // A loop blocked for the whole lock would have run the 10 ms ticker once or twice at most.
    expect(turns).toBeGreaterThan(5);
    expect(await get('a')).toMatchObject({ csrf: 'after the lock' });
  });

  it('fails with SQLITE_BUSY once it waited busyWaitMs, and keeps working afterwards', async () => {
    const impatient = new SqliteSessionStore(
      file,
      60_000,
      { checkpointedElsewhere: false, busyWaitMs: 100 },
      () => now,
    );
    others.push(impatient);
    lockFor(1_000);
    await expect(call((cb) => impatient.set('b', session(10_000), cb))).rejects.toMatchObject({
      code: expect.stringMatching(/^SQLITE_BUSY/),
    });
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    await call((cb) => impatient.set('b', session(10_000), cb));
    expect(await get('b')).not.toBeNull();
  });
});
