// What the failure policy sends again when the limiter store restarts from older data: the settles
// and releases it acknowledged within the replay window, at most `maxTracked` of them, oldest first.
import { describe, expect, it } from 'vitest';
import { MemoryConcurrencyLimiter, MemoryRateLimiter, MemoryTokenBudget } from '../../src/adapters/memory/limits.js';
import { type Limiters, withFailurePolicy } from '../../src/adapters/resilient-limits.js';

const day = '2030-02-01';
const subject = 'user:replay';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const quiet = { warn: () => {}, info: () => {} };

/** Memory limiters as the primary, recording the settles and releases that reach them. */
function recordingPrimary() {
  const seen: string[] = [];
  const budget = new MemoryTokenBudget();
  const concurrency = new MemoryConcurrencyLimiter();
  const primary: Limiters = {
    rate: new MemoryRateLimiter(),
    concurrency: {
      acquire: (...a) => concurrency.acquire(...a),
      release: async (s, leaseId) => {
        seen.push(`release ${leaseId}`);
        await concurrency.release(s, leaseId);
      },
    },
    budget: {
      reserve: (a) => budget.reserve(a),
      used: (s, d) => budget.used(s, d),
      settle: async (a) => {
        seen.push(`settle ${a.requestId}`);
        return budget.settle(a);
      },
    },
  };
  return { primary, seen };
}

function fallback(): Limiters {
  return {
    rate: new MemoryRateLimiter(),
    concurrency: new MemoryConcurrencyLimiter(),
    budget: new MemoryTokenBudget(),
  };
}

async function settle(limits: ReturnType<typeof withFailurePolicy>, requestId: string): Promise<void> {
  await limits.budget.reserve({ subject, day, requestId, min: 1, max: 10, limit: 1_000 });
  await limits.budget.settle({ subject, day, requestId, actual: 5 });
}

describe('replay after a limiter store restart', () => {
  it('sends again the latest acknowledged calls, oldest first, at most maxTracked', async () => {
    const { primary, seen } = recordingPrimary();
    const limits = withFailurePolicy(primary, fallback(), 'open', quiet, { maxTracked: 3, replayWindowMs: 60_000 });
    for (const id of ['r1', 'r2', 'r3', 'r4']) await settle(limits, id);
    await limits.concurrency.acquire(subject, 'l1', 5, 60_000);
    await limits.concurrency.release(subject, 'l1');
    seen.length = 0;
    limits.storeRestarted();
    await sleep(20);
    // Releases go first; r1 and r2 fell out of the three remembered.
    expect(seen).toEqual(['release l1', 'settle r3', 'settle r4']);
    // The replayed calls were acknowledged again, so a second restart sends them again (no more).
    seen.length = 0;
    limits.storeRestarted();
    await sleep(20);
    expect(seen).toEqual(['release l1', 'settle r3', 'settle r4']);
  });

  it('forgets calls older than the window', async () => {
    const { primary, seen } = recordingPrimary();
    const limits = withFailurePolicy(primary, fallback(), 'open', quiet, { replayWindowMs: 40 });
    await settle(limits, 'old');
    await sleep(80);
    await settle(limits, 'new');
    seen.length = 0;
    limits.storeRestarted();
    await sleep(20);
    expect(seen).toEqual(['settle new']);
  });

  it('stays bounded and in order over many more calls than it keeps', async () => {
    const { primary, seen } = recordingPrimary();
    const limits = withFailurePolicy(primary, fallback(), 'open', quiet, { maxTracked: 1_500, replayWindowMs: 60_000 });
    for (let i = 0; i < 5_000; i++) await settle(limits, `r${i}`);
    seen.length = 0;
    limits.storeRestarted();
    await sleep(200);
    expect(seen).toEqual(Array.from({ length: 1_500 }, (_, i) => `settle r${3_500 + i}`));
  });
});
