// The SQLite store's upkeep on a real file: the retention purge runs in batches that let other work
// in, and the WAL is checkpointed by the worker thread (the relay's connection never does it).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SqliteStore, type SqliteStoreOptions } from '../../src/adapters/sqlite/sqlite-store.js';
import type { UsageRecord } from '../../src/domain/types.js';
import { usageRecord } from '../helpers/usage.js';

const NOW = Date.parse('2026-06-01T12:00:00Z');
const DAY_MS = 86_400_000;
const utcDay = (r: UsageRecord): string => r.createdAt.toISOString().slice(0, 10);

const record = (discordId: string, createdAt: number): UsageRecord =>
  usageRecord({ discordId, chargedTokens: 15, createdAt: new Date(createdAt) });

let dir: string;
let file: string;
const stores: SqliteStore[] = [];
const open = (opts: SqliteStoreOptions): SqliteStore => {
  const store = SqliteStore.open(file, opts);
  stores.push(store);
  return store;
};
const walBytes = (): number => (existsSync(`${file}-wal`) ? statSync(`${file}-wal`).size : 0);

/** Polls `check` until it holds; the deadline only guards against a hang, nothing is timed. */
async function eventually(check: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`never happened: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'gg-store-maintenance-'));
  file = join(dir, 'guildgate.db');
});
afterEach(async () => {
  for (const s of stores.splice(0)) await s.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('retention purge', () => {
  it.each([
    ['pacing itself on the checkpoint worker', {}],
    ['with no checkpoint worker', { checkpoints: false as const }],
  ])('deletes exactly the expired rows in batches, letting other callbacks run in between (%s)', async (_, opts) => {
    const store = open({ ...opts, purgeBatchRows: 10 });
    const expired = Array.from({ length: 35 }, (_, i) => record(`user${i % 4}`, NOW - 100 * DAY_MS + i));
    const kept = Array.from({ length: 12 }, (_, i) => record(`user${i % 4}`, NOW - DAY_MS + i));
    // The cutoff itself is not expired: only strictly older rows go.
    const atCutoff = record('user0', NOW - 90 * DAY_MS);
    await store.insertUsage([...expired, ...kept, atCutoff], utcDay);

    // Counts how often the event loop got to run this callback while the purge was in progress.
    let turns = 0;
    let purging = true;
    const spin = () => {
      if (!purging) return;
      turns++;
      setImmediate(spin);
    };
    setImmediate(spin);
    const removed = await store.purgeUsage(new Date(NOW - 90 * DAY_MS));
    purging = false;

    expect(removed).toBe(35);
    // 35 rows at 10 a batch: four statements, three pauses between them.
    expect(turns).toBeGreaterThanOrEqual(3);
    const left = (await Promise.all(['user0', 'user1', 'user2', 'user3'].map((u) => store.listUsage(u, 100)))).flat();
    expect(left.map((r) => r.requestId).sort()).toEqual([...kept, atCutoff].map((r) => r.requestId).sort());
    // Aggregates are not part of the purge.
    const daily = await store.dailyUsage({ fromDay: '2026-01-01', toDay: '2026-12-31' });
    expect(daily.reduce((n, d) => n + d.requests, 0)).toBe(48);
    expect(await store.purgeUsage(new Date(NOW - 90 * DAY_MS))).toBe(0);
  });

  it('stops between batches when the store closes, without failing', async () => {
    const store = open({ purgeBatchRows: 5 });
    await store.insertUsage(
      Array.from({ length: 50 }, (_, i) => record('user0', NOW - 100 * DAY_MS + i)),
      utcDay,
    );
    const purge = store.purgeUsage(new Date(NOW));
    const closed = store.close();
    const removed = await purge;
    await closed;
    // The first batch ran before close was asked for; no batch ran after.
    expect(removed).toBe(5);
  });

  it('keeps a process with nothing else to do alive until the purge is done', () => {
    // The worker thread is unreferenced while idle; a purge waiting on it must still hold the process.
    const storeModule = pathToFileURL(resolve(import.meta.dirname, '../../src/adapters/sqlite/sqlite-store.ts')).href;
    const script = `
      import { SqliteStore } from ${JSON.stringify(storeModule)};
      const store = SqliteStore.open(${JSON.stringify(file)}, { purgeBatchRows: 10 });
      const base = { keyId: 'k', discordId: 'u', model: 'm', upstream: null, endpoint: 'chat.completions',
        promptTokens: 1, completionTokens: 1, chargedTokens: 2, estimated: false, status: 'ok', httpStatus: 200,
        latencyMs: 1, stream: false };
      await store.insertUsage(
        Array.from({ length: 100 }, (_, i) => ({ ...base, requestId: 'req_' + i, createdAt: new Date(1000 + i) })),
        () => '1970-01-01',
      );
      console.log('removed', await store.purgeUsage(new Date(5000)));
      await store.close();
    `;
    const out = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      encoding: 'utf8',
    });
    expect(out.stderr).toBe('');
    expect(out.stdout.trim()).toBe('removed 100');
    expect(out.status).toBe(0);
  });
});

describe('WAL checkpoint worker', () => {
  const writeMany = async (store: SqliteStore) => {
    for (let b = 0; b < 40; b++) {
      await store.insertUsage(
        Array.from({ length: 100 }, (_, i) => record(`user${(b * 100 + i) % 997}`, NOW + b * 1000 + i)),
        utcDay,
      );
    }
  };

  it('truncates the WAL once nobody writes, while the store stays open', async () => {
    const store = open({ checkpoints: { intervalMs: 10, idleMs: 50 } });
    await writeMany(store);
    // Only a TRUNCATE checkpoint empties the file; the relay's connection runs none.
    await eventually(() => walBytes() === 0, 'WAL truncated to 0 bytes');
    expect((await store.listUsage('user1', 10_000)).length).toBeGreaterThan(0);
  });

  it('truncates the WAL once it passes its size bound, with no idle time needed', async () => {
    const bound = 64 * 1024;
    const store = open({ checkpoints: { intervalMs: 10, idleMs: 3_600_000, maxWalBytes: bound } });
    // A reader on an older snapshot keeps every later frame in the WAL: the file is surely past
    // the bound when it lets go, whatever the worker did in the meantime.
    const reader = new Database(file);
    reader.exec('BEGIN');
    reader.prepare('SELECT COUNT(*) FROM usage_requests').get();
    await writeMany(store);
    expect(walBytes()).toBeGreaterThan(bound);
    reader.exec('COMMIT');
    reader.close();
    await eventually(() => walBytes() <= bound, `WAL back under ${bound} bytes`);
  });

  it('stops with the store: close closes the worker connection too, so SQLite removes the WAL file', async () => {
    const store = open({ checkpoints: { intervalMs: 10 } });
    await writeMany(store);
    expect(existsSync(`${file}-wal`)).toBe(true);
    await store.close();
    // SQLite deletes the WAL only when the last connection to the file closes.
    expect(existsSync(`${file}-wal`)).toBe(false);
    await store.close();
  });
});
