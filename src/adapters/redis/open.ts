// Builds the Redis-backed limiters for the production backend, wrapped in the configured failure
// policy with in-process insurance limiters behind them.
import type { Logger } from 'pino';
import {
  type BudgetHistory,
  MemoryConcurrencyLimiter,
  MemoryRateLimiter,
  MemoryTokenBudget,
} from '../memory/limits.js';
import { type FailurePolicy, withFailurePolicy } from '../resilient-limits.js';
import { createRedis, redactRedisUrl, waitForReady, watchRestarts } from './client.js';
import { RedisConcurrencyLimiter, RedisKeyEvents, RedisRateLimiter, RedisTokenBudget } from './limits.js';

const STARTUP_WAIT_MS = 5_000;

/**
 * `history` rebuilds a day's budget ledger that Redis (or the insurance limiter) does not hold;
 * `onStoreFailure` is told of each limiter call Redis failed (for metrics).
 */
export async function openRedisLimits(
  url: string,
  policy: FailurePolicy,
  log: Logger,
  history: BudgetHistory,
  onStoreFailure?: () => void,
) {
  const client = createRedis(url);
  // Before the first connection, so the first run_id is known and a later restart is seen.
  let restarted = () => {};
  watchRestarts(client, () => restarted());
  try {
    await waitForReady(client, STARTUP_WAIT_MS);
  } catch {
    // Start anyway: the failure policy covers an outage, and the client keeps reconnecting.
    log.warn(
      { redis: redactRedisUrl(url), policy },
      'Redis is not reachable at startup; limits follow the failure policy until it is',
    );
  }
  const limiters = withFailurePolicy(
    {
      rate: new RedisRateLimiter(client),
      concurrency: new RedisConcurrencyLimiter(client),
      budget: new RedisTokenBudget(client, history),
    },
    {
      rate: new MemoryRateLimiter(),
      concurrency: new MemoryConcurrencyLimiter(),
      budget: new MemoryTokenBudget(history),
    },
    policy,
    log,
    { onStoreFailure },
  );
  restarted = () => limiters.storeRestarted();
  return {
    ...limiters,
    // Failed-auth counters share the request limiter; their subjects (`ip:`) never collide with keys.
    authFailures: limiters.rate,
    keyEvents: new RedisKeyEvents(client, { log }),
    /** Shared with the web's session store, which must not outlive `close`. */
    redis: client,
    async close() {
      await client.quit().catch(() => client.disconnect());
    },
  };
}
