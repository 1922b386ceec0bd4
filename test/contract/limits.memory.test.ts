import { EventEmitter } from 'node:events';
import {
  MemoryConcurrencyLimiter,
  MemoryKeyEvents,
  MemoryRateLimiter,
  MemoryTokenBudget,
} from '../../src/adapters/memory/limits.js';
import { runLimitsContract } from './limits.contract.js';

// In-process "replicas" share one bus, as Redis-backed replicas share a channel.
const bus = new EventEmitter();

runLimitsContract('memory', async (opts) => {
  const events = new MemoryKeyEvents(bus);
  return {
    rate: new MemoryRateLimiter(),
    concurrency: new MemoryConcurrencyLimiter(),
    budget: new MemoryTokenBudget(opts?.history),
    events,
    cleanup: () => events.close(),
  };
});
