// Usage retention on a real SQLite file: only request records older than the period go.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { SqliteStore } from '../../src/adapters/sqlite/sqlite-store.js';
import { purgeExpiredUsage } from '../../src/app/retention.js';
import { budgetDay } from '../../src/domain/budget-day.js';
import type { UsageRecord } from '../../src/domain/types.js';
import { usageRecord } from '../helpers/usage.js';

const USER = '300000000000000003';
const NOW = new Date('2026-06-01T12:00:00Z');
const DAY_MS = 86_400_000;
let dir: string;
let store: SqliteStore;

const aged = (days: number): UsageRecord =>
  usageRecord({
    requestId: `req_age${days}`,
    discordId: USER,
    chargedTokens: 15,
    createdAt: new Date(NOW.getTime() - days * DAY_MS),
  });

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'gg-retention-'));
  store = SqliteStore.open(join(dir, 'guildgate.db'));
});
afterEach(async () => {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

it('purges request records older than the retention period and keeps recent ones', async () => {
  await store.insertUsage([400, 91, 89, 30, 1, 0].map(aged), (r) => budgetDay(r.createdAt, 'UTC'));

  expect(await purgeExpiredUsage(store, 90, NOW)).toBe(2);
  const left = (await store.listUsage(USER, 100)).map((r) => r.requestId).sort();
  expect(left).toEqual(['req_age0', 'req_age1', 'req_age30', 'req_age89']);
  // Daily aggregates are not part of the purge.
  expect(await store.dailyUsage({ discordId: USER, fromDay: '2025-01-01', toDay: '2026-12-31' })).toHaveLength(6);
});
