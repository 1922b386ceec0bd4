// Deleting one's data must not refill the day's budget, even after the limiter lost its state: the
// deletion's audit entry keeps the day's charged tokens, and the budget rebuild adds them.
import { afterEach, beforeEach, expect, it } from 'vitest';
import { MemoryKeyEvents } from '../../src/adapters/memory/limits.js';
import { SqliteStore } from '../../src/adapters/sqlite/sqlite-store.js';
import { budgetHistory, budgetSubject } from '../../src/app/admission.js';
import { deleteUser } from '../../src/app/users.js';
import { usageRecord } from '../helpers/usage.js';

const USER = '300000000000000001';
const NOW = new Date('2026-11-30T23:30:00Z');
let store: SqliteStore;

beforeEach(() => {
  store = SqliteStore.open(':memory:');
});
afterEach(() => store.close());

function usage(requestId: string, chargedTokens: number) {
  return usageRecord({ requestId, discordId: USER, chargedTokens, createdAt: NOW });
}

it("keeps the running days' charged tokens through deletions, and adds usage made after them", async () => {
  const deps = { store, keyEvents: new MemoryKeyEvents(), now: () => NOW };
  const history = budgetHistory(store);
  // A budget zone east of UTC is already on the next day: both days are still running.
  await store.insertUsage([usage('req_1', 100)], () => '2026-11-30');
  await store.insertUsage([usage('req_2', 40)], () => '2026-12-01');
  await store.ensureUser(USER, NOW);

  expect(await deleteUser(deps, { discordId: USER, actor: 'web:x' })).toMatchObject({ ok: true, usageRecords: 2 });
  expect(await store.dailyUsage({ discordId: USER, fromDay: '2026-11-01', toDay: '2026-12-31' })).toEqual([]);
  expect(await history(budgetSubject(USER), '2026-11-30')).toBe(100);
  expect(await history(budgetSubject(USER), '2026-12-01')).toBe(40);

  // Back the same day, spends more, deletes again: both deletions count.
  await store.insertUsage([usage('req_3', 7)], () => '2026-11-30');
  expect(await history(budgetSubject(USER), '2026-11-30')).toBe(107);
  await deleteUser(deps, { discordId: USER, actor: 'web:x' });
  expect(await history(budgetSubject(USER), '2026-11-30')).toBe(107);
  expect(await history(budgetSubject(USER), '2026-11-29')).toBe(0);
});
