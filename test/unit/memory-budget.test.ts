// The in-process budget keeps no trace of settled requests: memory follows the requests in flight,
// not the traffic of the day (it once kept ~700 bytes per request for an hour).
import { expect, it } from 'vitest';
import { MemoryTokenBudget } from '../../src/adapters/memory/limits.js';

it('300,000 settled requests leave the heap where it was', async () => {
  const budget = new MemoryTokenBudget();
  const day = '2030-01-15';
  const run = async (from: number, count: number) => {
    for (let i = from; i < from + count; i++) {
      const requestId = `req_${i.toString(36).padStart(12, '0')}`;
      const subject = `user:${1000 + (i % 500)}`;
      await budget.reserve({ subject, day, requestId, min: 1, max: 50, limit: 1_000_000_000 });
      await budget.settle({ subject, day, requestId, actual: 20 });
    }
  };
  await run(0, 10_000); // every subject's ledger exists from here on
  const before = process.memoryUsage().heapUsed;
  await run(10_000, 300_000);
  const grown = process.memoryUsage().heapUsed - before;
  // Short-lived garbage stays in the young generation (tens of MB at most); 300,000 retained
  // markers would be about 200 MB.
  expect(grown).toBeLessThan(64 * 1024 * 1024);
  expect(await budget.used('user:1000', day)).toBe(20 * (310_000 / 500));
});
