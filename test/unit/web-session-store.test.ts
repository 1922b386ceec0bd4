// The SQLite session store: round trip, expiry by the cookie's expiry, touch, destroy, prune.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { SessionData } from 'express-session';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { SqliteSessionStore } from '../../src/web/session-store.js';

let dir: string;
let now: number;
let store: SqliteSessionStore;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'gg-sessions-'));
  now = Date.parse('2026-11-30T12:00:00Z');
  store = new SqliteSessionStore(join(dir, 'guildgate.db'), 60_000, () => now);
});
afterEach(() => {
  store.close();
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
