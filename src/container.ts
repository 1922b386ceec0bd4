// The composition root: builds every adapter once from the config and hands out `Services`.
// Nothing else constructs adapters, so tests build a container with whatever config they need.
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Logger } from 'pino';
import { Gauge } from 'prom-client';
import {
  type BudgetHistory,
  MemoryConcurrencyLimiter,
  MemoryKeyEvents,
  MemoryRateLimiter,
  MemoryTokenBudget,
} from './adapters/memory/limits.js';
import type { RedisClient } from './adapters/redis/client.js';
import { SqliteStore } from './adapters/sqlite/sqlite-store.js';
import { o200kTokenizer } from './adapters/tokenizer.js';
import { UndiciUpstream } from './adapters/upstream/undici-upstream.js';
import { budgetHistory, type LimitDeps } from './app/admission.js';
import { inUnit, ledgerSpend, planCostCap } from './app/cost-cap.js';
import { InFlight } from './app/in-flight.js';
import { LocalGate } from './app/local-gate.js';
import { UsageRecorder } from './app/usage-recorder.js';
import { KeyVerifier } from './app/verify-key.js';
import type { Config } from './config/schema.js';
import { BudgetCalendar } from './domain/budget-day.js';
import type { ConcurrencyLimiter, KeyEvents, RateLimiter, Store, TokenBudget, Upstream } from './domain/ports.js';
import { TokenMeter } from './domain/token-estimate.js';
import { PromMetrics } from './observability/metrics.js';
import { instrumentUpstream } from './observability/upstream.js';
import type { Services } from './services.js';

/** Longest a request may hold a concurrency slot if its process dies without releasing it. */
const LEASE_TTL_MS = 10 * 60_000;
/**
 * Event-loop time one request may spend tokenizing exactly (prompt, and produced text when the
 * upstream reports no usage); beyond it text is counted as bytes, an upper bound.
 */
const METER_BUDGET_MS = 2;
/** How long closing keeps retrying usage writes the store refuses. */
const USAGE_FLUSH_MS = 3_000;

interface LimitAdapters {
  rate: RateLimiter;
  authFailures: RateLimiter;
  concurrency: ConcurrencyLimiter;
  budget: TokenBudget;
  keyEvents: KeyEvents;
  redis?: RedisClient;
  close(): Promise<void>;
}

export function storeBackend(cfg: Config): 'sqlite' | 'mongo' {
  if (cfg.storage.store === 'auto') return cfg.env.mongodbUri ? 'mongo' : 'sqlite';
  return cfg.storage.store;
}

function limitsBackend(cfg: Config): 'memory' | 'redis' {
  if (cfg.storage.limits === 'auto') return cfg.env.redisUrl ? 'redis' : 'memory';
  return cfg.storage.limits;
}

/** The embedded SQLite file (the store's, and the web sessions' when there is no Redis). */
export function sqliteFile(cfg: Config): string {
  return join(resolve(cfg.dataDir), 'guildgate.db');
}

async function openStore(cfg: Config, backend: 'sqlite' | 'mongo'): Promise<Store> {
  if (backend === 'mongo') {
    const { MongoStore } = await import('./adapters/mongo/mongo-store.js');
    return MongoStore.connect(cfg.env.mongodbUri!, { retentionDays: cfg.usage.retentionDays });
  }
  mkdirSync(resolve(cfg.dataDir), { recursive: true });
  return SqliteStore.open(sqliteFile(cfg));
}

function memoryLimits(history: BudgetHistory): LimitAdapters {
  return {
    rate: new MemoryRateLimiter(),
    authFailures: new MemoryRateLimiter(),
    concurrency: new MemoryConcurrencyLimiter(),
    budget: new MemoryTokenBudget(history),
    keyEvents: new MemoryKeyEvents(),
    close: async () => {},
  };
}

async function openLimits(
  cfg: Config,
  backend: 'memory' | 'redis',
  log: Logger,
  store: Store,
  metrics: PromMetrics,
): Promise<LimitAdapters> {
  const history = budgetHistory(store, planCostCap(cfg));
  if (backend === 'memory') return memoryLimits(history);
  const { openRedisLimits } = await import('./adapters/redis/open.js');
  return openRedisLimits(cfg.env.redisUrl!, cfg.limits.onStoreFailure, log, history, () =>
    metrics.backendError('redis', 'limits'),
  );
}

export interface BuildOptions {
  log: Logger;
  now?: () => Date;
  /** Replaces the upstream adapter (the demo command wires its own upstream through config instead). */
  upstream?: Upstream;
}

/** Whether this process serves /metrics (on its own listener or behind the token on the main port). */
export function metricsServed(cfg: Config): boolean {
  return cfg.metrics.enabled || cfg.env.metricsToken !== undefined;
}

export async function buildServices(config: Config, opts: BuildOptions): Promise<Services> {
  const { log } = opts;
  const now = opts.now ?? (() => new Date());
  // Always collected (a few additions per request); process metrics only where someone can read them.
  const metrics = new PromMetrics({
    models: Object.keys(config.models),
    upstreams: Object.keys(config.upstreams),
    processMetrics: metricsServed(config),
  });
  const backends = { store: storeBackend(config), limits: limitsBackend(config) };
  const store = await openStore(config, backends.store);
  let limits: LimitAdapters;
  try {
    limits = await openLimits(config, backends.limits, log, store, metrics);
  } catch (err) {
    await store.close();
    throw err;
  }
  limits.redis?.on('error', () => metrics.backendError('redis', 'connection'));
  const upstream = instrumentUpstream(
    opts.upstream ?? new UndiciUpstream(config.upstreams, config.env.upstreamKeys),
    metrics,
  );
  const verifier = new KeyVerifier(store, config.limits.keyCacheTtlMs, now);
  await verifier.listen(limits.keyEvents);
  const usage = new UsageRecorder(
    store,
    {
      batchSize: config.usage.batchSize,
      flushIntervalMs: config.usage.flushIntervalMs,
      timeZone: config.limits.budgetTimeZone,
    },
    log,
    metrics,
  );
  usage.start();
  const inflight = new InFlight();
  metrics.watch({
    usageQueueDepth: () => usage.pending,
    requestsInFlight: () => inflight.size,
    streamsInFlight: () => inflight.streams,
  });

  const limitDeps: LimitDeps = {
    rate: limits.rate,
    concurrency: limits.concurrency,
    budget: limits.budget,
    calendar: new BudgetCalendar(config.limits.budgetTimeZone),
    now,
    leaseTtlMs: LEASE_TTL_MS,
    costCap: planCostCap(config),
  };
  // Loads the time-zone data now (about 100 ms the first time) rather than on the first request.
  limitDeps.calendar.at(now());
  if (limitDeps.costCap) {
    const read = ledgerSpend(limitDeps.costCap, limits.budget, limitDeps.calendar, now);
    new Gauge({
      name: 'guildgate_cost_cap_spent',
      help: "Today's spend on each cost cap (budget tokens, or costCap.currency) by scope and unit; the cap is in guildgate_cost_cap_limit.",
      labelNames: ['scope', 'unit'],
      registers: [metrics.registry],
      async collect() {
        // A limiter that cannot answer keeps the last values rather than failing the whole scrape.
        const spend = await read().catch(() => []);
        for (const l of spend) this.set({ scope: l.scope, unit: l.unit }, l.spent);
      },
    });
    const cap = new Gauge({
      name: 'guildgate_cost_cap_limit',
      help: 'Each cost cap per budget day, by scope and unit.',
      labelNames: ['scope', 'unit'],
      registers: [metrics.registry],
    });
    for (const l of limitDeps.costCap.ledgers) cap.set({ scope: l.scope, unit: l.unit }, inUnit(l, l.perDay));
  }

  let closed: Promise<void> | null = null;
  return {
    config,
    log,
    now,
    store,
    keyEvents: limits.keyEvents,
    redis: limits.redis,
    upstream,
    meter: () =>
      new TokenMeter(o200kTokenizer, { budgetMs: METER_BUDGET_MS, clock: performance.now.bind(performance) }),
    verifier,
    usage,
    inflight,
    authFailures: limits.authFailures,
    limits: limitDeps,
    gate: new LocalGate(),
    keys: {
      store,
      keyEvents: limits.keyEvents,
      now,
      tiers: config.tiers,
      defaultTier: config.defaultTier,
      gates: config.gates,
    },
    backends,
    metrics,
    close(deadline = Date.now() + USAGE_FLUSH_MS) {
      closed ??= (async () => {
        await usage.stop(deadline);
        await upstream.close();
        await limits.keyEvents.close();
        await limits.close();
        await store.close();
      })();
      return closed;
    },
  };
}
