// Limit adapters shared by every replica through Redis. Each check is one atomic server-side step
// (a Lua operation, batched with those of other requests: limit-ops.ts), so replicas never race
// each other. Every key starts with `gg:` and carries a hash tag per subject, so one check touches
// one Redis Cluster slot.
import { Cluster } from 'ioredis';
import type {
  BudgetReservation,
  ChargeableTokenBudget,
  ConcurrencyLimiter,
  KeyEvents,
  RateDecision,
  RateLimiter,
} from '../../domain/ports.js';
import { type BudgetHistory, checkBudgetArgs, mayHaveLostDay } from '../memory/limits.js';
import type { RedisClient } from './client.js';
import { type LimitOps, limitOps } from './limit-ops.js';

const WINDOW_MS = 60_000;

/**
 * Requests per minute in a fixed window that opens with a subject's first request, as
 * rate-limiter-flexible counts them in process (the memory adapter), but as one operation of the
 * shared limit batches rather than a command of its own per request (see limit-ops.ts).
 */
export class RedisRateLimiter implements RateLimiter {
  readonly #ops: LimitOps;

  /** `keyPrefix` separates limiters that share a client (e.g. per-key requests and per-IP auth failures). */
  constructor(
    client: RedisClient,
    private readonly keyPrefix = 'gg:rl',
  ) {
    this.#ops = limitOps(client);
  }

  async consume(subject: string, perMinute: number): Promise<RateDecision> {
    const [count, msLeft] = await this.#ops.run<[number, number]>('q', `${this.keyPrefix}:${perMinute}:{${subject}}`, [
      WINDOW_MS,
    ]);
    const allowed = count <= perMinute;
    return {
      allowed,
      limit: perMinute,
      remaining: allowed ? perMinute - count : 0,
      // Never 0: a caller turns this into retry-after and must not be told "retry now" at the edge.
      resetMs: Math.min(WINDOW_MS, Math.max(1, msLeft)),
    };
  }
}

// KEYS[1] day ledger hash; ARGV used, expireAtSec, rebuiltAtMs (0: not rebuilt from history).
// Creates the ledger unless another replica did.
const SEED = `if redis.call('HSETNX', KEYS[1], 'used', ARGV[1]) == 1 then
  if ARGV[3] ~= '0' then redis.call('HSET', KEYS[1], 'rebuilt', ARGV[3]) end
  redis.call('EXPIREAT', KEYS[1], ARGV[2])
end
return 1`;

// KEYS[1] day ledger hash; ARGV requestId, actual, atMs, expireAtSec. Returns used, or -1 when the
// ledger does not exist (the caller creates it and asks again). Adds spend made elsewhere once per
// request (the c: field stays with the ledger, so only such charges leave a trace), unless the
// ledger was rebuilt from the usage records after it was spent (or in the same millisecond: the
// rebuild may have counted it already, and counting it twice is the one error not allowed).
const CHARGE = `if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local used = tonumber(redis.call('HGET', KEYS[1], 'used') or '0')
if tonumber(redis.call('HGET', KEYS[1], 'rebuilt') or '0') >= tonumber(ARGV[3]) then return used end
if redis.call('HSETNX', KEYS[1], 'c:' .. ARGV[1], ARGV[2]) == 0 then return used end
used = redis.call('HINCRBY', KEYS[1], 'used', tonumber(ARGV[2]))
redis.call('EXPIREAT', KEYS[1], ARGV[4])
return used`;

/** The scripts above, as ioredis `defineCommand` adds them to the client. */
interface LimitCommands {
  ggBudgetSeed(key: string, used: number, expireAtSec: number, rebuiltAtMs: number): Promise<number>;
  ggBudgetCharge(key: string, requestId: string, actual: number, atMs: number, expireAtSec: number): Promise<number>;
}

function withCommands(client: RedisClient): LimitCommands {
  // Defining again is harmless: ioredis keeps one script per name and sends EVALSHA.
  client.defineCommand('ggBudgetSeed', { numberOfKeys: 1, lua: SEED });
  client.defineCommand('ggBudgetCharge', { numberOfKeys: 1, lua: CHARGE });
  return client as unknown as LimitCommands;
}

export class RedisConcurrencyLimiter implements ConcurrencyLimiter {
  readonly #ops: LimitOps;

  constructor(client: RedisClient) {
    this.#ops = limitOps(client);
  }

  async acquire(
    subject: string,
    leaseId: string,
    max: number,
    ttlMs: number,
  ): Promise<{ ok: boolean; active: number }> {
    const [ok, active] = await this.#ops.run<[number, number]>('a', leaseKey(subject), [leaseId, max, ttlMs]);
    return { ok: ok === 1, active };
  }

  async release(subject: string, leaseId: string): Promise<void> {
    await this.#ops.run('r', leaseKey(subject), [leaseId]);
  }
}

function leaseKey(subject: string): string {
  return `gg:conc:{${subject}}`;
}

/**
 * Set once when Redis first holds budget ledgers, to the time it did (epoch ms). Redis restarted
 * empty has lost it too, so a ledger missing for a day that began before the marker was (re)set may
 * have been lost: that day is rebuilt from the store's usage records.
 */
const LEDGERS_SINCE_KEY = 'gg:budget:since';
/** A ledger that vanishes again right after being created means Redis is losing data. */
const MAX_SEED_ATTEMPTS = 2;

export class RedisTokenBudget implements ChargeableTokenBudget {
  readonly #commands: LimitCommands;
  readonly #ops: LimitOps;

  constructor(
    private readonly client: RedisClient,
    private readonly history?: BudgetHistory,
  ) {
    this.#commands = withCommands(client);
    this.#ops = limitOps(client);
  }

  async reserve(args: {
    subject: string;
    day: string;
    requestId: string;
    min: number;
    max: number;
    limit: number;
  }): Promise<BudgetReservation> {
    checkBudgetArgs(args);
    const key = budgetKey(args.subject, args.day);
    const expireAt = expireAtSec(args.day);
    for (let attempt = 0; ; attempt++) {
      const [ok, granted, used] = await this.#ops.run<[number, number, number]>('v', key, [
        args.requestId,
        args.min,
        args.max,
        args.limit,
        expireAt,
      ]);
      if (ok !== -1) return { ok: ok === 1, granted, used, limit: args.limit };
      if (attempt === MAX_SEED_ATTEMPTS) throw new Error('the budget ledger keeps disappearing from Redis');
      await this.#seed(key, args.subject, args.day, expireAt);
    }
  }

  async settle(args: { subject: string; day: string; requestId: string; actual: number }): Promise<{ used: number }> {
    checkBudgetArgs(args);
    const used = await this.#ops.run<number>('s', budgetKey(args.subject, args.day), [
      args.requestId,
      args.actual,
      expireAtSec(args.day),
    ]);
    return { used };
  }

  async charge(args: {
    subject: string;
    day: string;
    requestId: string;
    actual: number;
    at: number;
  }): Promise<{ used: number }> {
    checkBudgetArgs(args);
    const key = budgetKey(args.subject, args.day);
    const expireAt = expireAtSec(args.day);
    for (let attempt = 0; ; attempt++) {
      const used = await this.#commands.ggBudgetCharge(key, args.requestId, args.actual, args.at, expireAt);
      if (used !== -1) return { used };
      if (attempt === MAX_SEED_ATTEMPTS) throw new Error('the budget ledger keeps disappearing from Redis');
      await this.#seed(key, args.subject, args.day, expireAt);
    }
  }

  async used(subject: string, day: string): Promise<number> {
    checkBudgetArgs({ day });
    return Number((await this.client.hget(budgetKey(subject, day), 'used')) ?? 0);
  }

  async #seed(key: string, subject: string, day: string, expireAt: number): Promise<void> {
    let spent = 0;
    let rebuiltAt = 0;
    if (this.history) {
      await this.client.set(LEDGERS_SINCE_KEY, Date.now(), 'NX');
      const since = Number(await this.client.get(LEDGERS_SINCE_KEY));
      if (!(since > 0) || mayHaveLostDay(day, since)) {
        spent = await this.history(subject, day);
        // Taken after the read: whatever was spent before this moment may be in it, so a charge
        // made earlier is never added on top (at worst one still unwritten is missed).
        rebuiltAt = Date.now();
      }
    }
    await this.#commands.ggBudgetSeed(key, spent, expireAt, rebuiltAt);
  }
}

function budgetKey(subject: string, day: string): string {
  return `gg:budget:{${subject}:${day}}`;
}

// A budget day ends at most 36 h after its UTC midnight (24 h, plus 12 h in the westernmost zone,
// UTC-12); the ledger is kept 48 h beyond that so late settles and yesterday's lookups still find it.
function expireAtSec(day: string): number {
  return Date.parse(`${day}T00:00:00Z`) / 1000 + (36 + 48) * 3600;
}

export const KEY_EVENTS_CHANNEL = 'gg:key-events';

export interface RedisKeyEventsOptions {
  /** How long `subscribe` waits for Redis to confirm before it resolves anyway. */
  subscribeWaitMs?: number;
  log?: { warn(obj: object, msg: string): void };
}

/**
 * Key change events for every replica over Redis pub/sub. Subscribing takes a dedicated connection
 * (a subscribed connection can run nothing else) that queues and retries forever, and ioredis
 * re-subscribes it after every reconnect.
 */
export class RedisKeyEvents implements KeyEvents {
  readonly #handlers: Array<(keyHash: string) => void> = [];
  #subscriber: RedisClient | null = null;
  #subscribed: Promise<void> | null = null;

  constructor(
    private readonly client: RedisClient,
    private readonly opts: RedisKeyEventsOptions = {},
  ) {}

  async publish(keyHash: string): Promise<void> {
    await this.client.publish(KEY_EVENTS_CHANNEL, keyHash);
  }

  /**
   * Resolves once Redis confirmed the subscription, or after `subscribeWaitMs` while Redis is
   * unreachable (boot must not hang on it); the subscription is then made when Redis is back.
   */
  async subscribe(onChange: (keyHash: string) => void): Promise<void> {
    this.#handlers.push(onChange);
    this.#subscribed ??= this.#start();
    await this.#subscribed;
  }

  async close(): Promise<void> {
    this.#handlers.length = 0;
    this.#subscriber?.disconnect();
    this.#subscriber = null;
  }

  async #start(): Promise<void> {
    const sub = duplicateForSubscribe(this.client);
    this.#subscriber = sub;
    sub.on('error', () => {
      // Reconnects are automatic; a lost event only means a cache entry lives to its TTL.
    });
    sub.on('message', (channel: string, keyHash: string) => {
      if (channel !== KEY_EVENTS_CHANNEL) return;
      for (const handler of this.#handlers) {
        try {
          handler(keyHash);
        } catch (err) {
          this.opts.log?.warn({ error: (err as Error).message }, 'key event handler failed');
        }
      }
    });
    const confirmed = sub.subscribe(KEY_EVENTS_CHANNEL).then(
      () => true,
      () => false,
    );
    const waitMs = this.opts.subscribeWaitMs ?? 5_000;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), waitMs);
    });
    const ok = await Promise.race([confirmed, timedOut]);
    clearTimeout(timer);
    if (!ok)
      this.opts.log?.warn({ channel: KEY_EVENTS_CHANNEL }, 'key events not subscribed yet; will be when Redis is back');
  }
}

// Unlike command connections, the subscriber may wait for Redis: a queued SUBSCRIBE is exactly
// what should happen when it comes back.
function duplicateForSubscribe(client: RedisClient): RedisClient {
  if (client instanceof Cluster) {
    return client.duplicate([], {
      enableOfflineQueue: true,
      redisOptions: { ...client.options.redisOptions, maxRetriesPerRequest: null, commandTimeout: undefined },
    });
  }
  return client.duplicate({ enableOfflineQueue: true, maxRetriesPerRequest: null, commandTimeout: undefined });
}
