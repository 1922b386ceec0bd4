// The limit operations of the hot path (request counts, lease acquire and release, budget reserve
// and settle), sent
// to Redis in batches: every operation issued during one turn of the event loop, by any request in
// flight, leaves in one script call per cluster slot instead of one command each. ioredis spends
// about as much CPU per command as the relay spends on everything else a request needs, so the
// count of commands, not their round trips, is what bounds a replica's throughput
// (bench/README.md, "Redis: commands, not round trips"). Each operation still runs atomically in
// Redis, in the order it was issued.
import calculateSlot from 'cluster-key-slot';
import { Cluster } from 'ioredis';
import type { RedisClient } from './client.js';

// Redis server time, read once per batch, so replicas with skewed clocks agree on when a lease expires.
// q: request  KEYS counter of a fixed window that opens with its first request; windowMs ->
//             {count, msLeft}. Counts refused requests too, as a refused request spends its point.
// a: acquire  KEYS lease set; leaseId, max, ttlMs -> {ok, active}
// r: release  KEYS lease set; leaseId -> removed
// v: reserve  KEYS day ledger hash (fields: used; r:<requestId> reserved; c:<requestId> charged
//             elsewhere, see CHARGE in limits.ts; rebuilt: when rebuilt from the usage records);
//             requestId, min, max, limit, expireAtSec -> {ok, granted, used}, or {-1, 0, 0} when the
//             ledger does not exist yet (a new day, or Redis lost it): the caller creates it and asks
//             again. Refuses when nothing is left or less than min fits, like the in-process adapter.
// s: settle   KEYS day ledger hash; requestId, actual, expireAtSec -> used. Idempotent by
//             construction: only a held reservation is settled, and settling removes it.
const SCRIPT = `local now
local function now_ms()
  if not now then
    local t = redis.call('TIME')
    now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  return now
end
local ops = {}
function ops.q(key, windowMs)
  local count = redis.call('INCR', key)
  local left = redis.call('PTTL', key)
  if left < 0 then
    left = tonumber(windowMs)
    redis.call('PEXPIRE', key, left)
  end
  return {count, left}
end
function ops.a(key, leaseId, max, ttl)
  local t = now_ms()
  ttl = tonumber(ttl)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', t)
  if redis.call('ZSCORE', key, leaseId) or redis.call('ZCARD', key) < tonumber(max) then
    redis.call('ZADD', key, t + ttl, leaseId)
    if redis.call('PTTL', key) < ttl then redis.call('PEXPIRE', key, ttl) end
    return {1, redis.call('ZCARD', key)}
  end
  return {0, redis.call('ZCARD', key)}
end
function ops.r(key, leaseId)
  return redis.call('ZREM', key, leaseId)
end
function ops.v(key, requestId, min, max, limit, expireAt)
  if redis.call('EXISTS', key) == 0 then return {-1, 0, 0} end
  local used = tonumber(redis.call('HGET', key, 'used') or '0')
  local existing = redis.call('HGET', key, 'r:' .. requestId)
  if existing then return {1, tonumber(existing), used} end
  local available = tonumber(limit) - used
  local granted = math.min(tonumber(max), available)
  if available <= 0 or granted < tonumber(min) then return {0, 0, used} end
  used = redis.call('HINCRBY', key, 'used', granted)
  redis.call('HSET', key, 'r:' .. requestId, granted)
  redis.call('EXPIREAT', key, expireAt)
  return {1, granted, used}
end
function ops.s(key, requestId, actual, expireAt)
  local reserved = redis.call('HGET', key, 'r:' .. requestId)
  if not reserved then return tonumber(redis.call('HGET', key, 'used') or '0') end
  local used = redis.call('HINCRBY', key, 'used', tonumber(actual) - tonumber(reserved))
  redis.call('HDEL', key, 'r:' .. requestId)
  redis.call('EXPIREAT', key, expireAt)
  return used
end
local out, a = {}, 1
for i = 1, #KEYS do
  local n = tonumber(ARGV[a + 1])
  out[i] = ops[ARGV[a]](KEYS[i], unpack(ARGV, a + 2, a + 1 + n))
  a = a + 2 + n
end
return out`;

/** The script's name on the client; sent at once, outside ioredis's own pipelining (see createRedis). */
export const LIMIT_OPS_COMMAND = 'ggLimitOps';

export type LimitOp = 'q' | 'a' | 'r' | 'v' | 's';

interface Queued {
  op: LimitOp;
  key: string;
  args: Array<string | number>;
  resolve(value: unknown): void;
  reject(err: unknown): void;
}

/** Beyond this many operations a batch is split, so no single script holds Redis for long. */
const MAX_BATCH = 256;

type OpsClient = { [LIMIT_OPS_COMMAND](...args: Array<string | number>): Promise<unknown[]> };

export class LimitOps {
  readonly #client: OpsClient;
  readonly #cluster: boolean;
  // Operations waiting for the end of this turn, by cluster slot (one group without a cluster).
  #queued = new Map<number, Queued[]>();
  #scheduled = false;

  constructor(client: RedisClient) {
    client.defineCommand(LIMIT_OPS_COMMAND, { lua: SCRIPT });
    this.#client = client as unknown as OpsClient;
    this.#cluster = client instanceof Cluster;
  }

  /** Runs one operation on `key` with the next batch; settles with its own result or the batch's error. */
  run<T>(op: LimitOp, key: string, args: Array<string | number>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const slot = this.#cluster ? calculateSlot(key) : 0;
      let group = this.#queued.get(slot);
      if (!group) {
        group = [];
        this.#queued.set(slot, group);
      }
      group.push({ op, key, args, resolve: resolve as (value: unknown) => void, reject });
      if (!this.#scheduled) {
        this.#scheduled = true;
        setImmediate(() => this.#flush());
      }
    });
  }

  #flush(): void {
    const groups = this.#queued;
    this.#queued = new Map();
    this.#scheduled = false;
    for (const group of groups.values()) {
      for (let i = 0; i < group.length; i += MAX_BATCH) this.#send(group.slice(i, i + MAX_BATCH));
    }
  }

  #send(batch: Queued[]): void {
    const keys: string[] = [];
    const argv: Array<string | number> = [];
    for (const q of batch) {
      keys.push(q.key);
      argv.push(q.op, q.args.length, ...q.args);
    }
    let sent: Promise<unknown[]>;
    try {
      sent = this.#client[LIMIT_OPS_COMMAND](keys.length, ...keys, ...argv);
    } catch (err) {
      sent = Promise.reject(err);
    }
    sent.then(
      (results) => {
        for (let i = 0; i < batch.length; i++) batch[i]!.resolve(results[i]);
      },
      // A script stops at its first error, so any operation of the batch may have run: each caller
      // treats it as a store failure whose effect is unknown, as with a timeout.
      (err) => {
        for (const q of batch) q.reject(err);
      },
    );
  }
}

const shared = new WeakMap<RedisClient, LimitOps>();

/** One batcher per client, so the leases and the budgets of every request share its batches. */
export function limitOps(client: RedisClient): LimitOps {
  let ops = shared.get(client);
  if (!ops) {
    ops = new LimitOps(client);
    shared.set(client, ops);
  }
  return ops;
}
