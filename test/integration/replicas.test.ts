// Two relay processes behind one Redis, as replicas run in production: limits are one shared count,
// and a revocation from the operator CLI reaches every replica at once. No MongoDB runs here, so the
// replicas share one SQLite file (WAL) as their store; Redis is what this file puts to the test.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { SqliteStore } from '../../src/adapters/sqlite/sqlite-store.js';
import type { UsageRecord } from '../../src/domain/types.js';
import { type FakeUpstream, startFakeUpstream } from '../fakes/openai-upstream.js';
import { type RedisServer, startRedis } from '../helpers/redis-server.js';
import { newDiscordId } from '../helpers/relay.js';
import { processGroup, type RelayProcess } from '../helpers/relay-process.js';

const RPM = 6;
// The fake upstream reports 5 prompt tokens (words) + 3 completion tokens for every chat below, so
// one request costs 8 budget tokens and the budget fits 10 of them.
const COST = 8;
const BUDGET = 10 * COST;
const HELLO = [{ role: 'user', content: 'Say hello to the guild' }];

const procs = processGroup();
let redis: RedisServer;
let upstream: FakeUpstream;
let dir: string;
let env: Record<string, string>;
let replicas: [RelayProcess, RelayProcess];
let store: SqliteStore;
let inspect: Redis;

interface Reply {
  status: number;
  code: string | null;
  remaining: string | null;
}

async function chat(base: string, key: string): Promise<Reply> {
  const res = await fetch(`${base}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'gpt-4o-mini', messages: HELLO }),
  });
  const body = (await res.json()) as { error?: { code?: string } };
  return {
    status: res.status,
    code: body.error?.code ?? null,
    remaining: res.headers.get('x-ratelimit-remaining-requests'),
  };
}

async function modelsStatus(base: string, key: string): Promise<number> {
  const res = await fetch(`${base}/v1/models`, { headers: { authorization: `Bearer ${key}` } });
  await res.arrayBuffer();
  return res.status;
}

/** Issues a key through the operator CLI, the way an operator would. */
async function issue(tier: string): Promise<{ key: string; id: string; discordId: string }> {
  const r = await procs.cli(dir, env, ['--json', 'keys', 'issue', '--discord-id', newDiscordId(), '--tier', tier]);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as { key: string; id: string; discordId: string };
}

/** Polls `check` every 50 ms until it returns a value; bounded so a broken path fails, not hangs. */
async function eventually<T>(check: () => Promise<T | null>, what: string, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const v = await check();
    if (v !== null) return v;
    await sleep(50);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for: ${what}`);
}

/** What the Redis day ledger(s) hold for a Discord user. */
async function ledgerUsed(discordId: string): Promise<number> {
  const keys = await inspect.keys(`gg:budget:{user:${discordId}:*}`);
  let used = 0;
  for (const k of keys) used += Number((await inspect.hget(k, 'used')) ?? 0);
  return used;
}

beforeAll(async () => {
  [redis, upstream] = await Promise.all([startRedis(), startFakeUpstream()]);
  dir = mkdtempSync(join(tmpdir(), 'gg-replicas-'));
  const config = {
    server: { host: '127.0.0.1', port: 0, shutdownGraceMs: 5_000 },
    dataDir: join(dir, 'data'),
    storage: { store: 'sqlite', limits: 'redis' },
    // A 30 s key cache: a revocation seen within a second can only have come over pub/sub.
    limits: { keyCacheTtlMs: 30_000, authFailuresPerMinute: 1_000 },
    usage: { flushIntervalMs: 50 },
    defaultTier: 'roomy',
    tiers: {
      roomy: { rpm: 1_000, maxConcurrent: 50, tokensPerDay: 1_000_000, maxTokens: 64 },
      tight: { rpm: RPM, maxConcurrent: 50, tokensPerDay: 1_000_000, maxTokens: 64 },
      single: { rpm: 1_000, maxConcurrent: 1, tokensPerDay: 1_000_000, maxTokens: 64 },
      budget: { rpm: 1_000, maxConcurrent: 50, tokensPerDay: BUDGET, maxTokens: 20 },
    },
    upstreams: { fake: { baseUrl: upstream.url, timeouts: { connectMs: 2_000, firstByteMs: 5_000, idleMs: 5_000 } } },
    models: { 'gpt-4o-mini': { routes: [{ upstream: 'fake', model: 'gpt-4o-mini' }] } },
  };
  const file = join(dir, 'guildgate.yaml');
  writeFileSync(file, stringify(config));
  env = { GUILDGATE_CONFIG: file, REDIS_URL: redis.url, LOG_LEVEL: 'info' };
  // One after the other: the first creates and migrates the shared SQLite file.
  const first = await procs.relay(dir, env);
  replicas = [first, await procs.relay(dir, env)];
  store = SqliteStore.open(join(dir, 'data', 'guildgate.db'));
  inspect = new Redis(redis.url, { maxRetriesPerRequest: 1 });
}, 90_000);

afterAll(async () => {
  await procs.killAll();
  inspect?.disconnect();
  await store?.close();
  await upstream?.close();
  await redis?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('two relay replicas on one Redis', () => {
  it('share one requests-per-minute count per key', async () => {
    const [a, b] = replicas;
    const { key } = await issue('tight');
    const before = upstream.requests.length;
    const replies: Reply[] = [];
    for (let i = 0; i < 2 * RPM; i++) replies.push(await chat(i % 2 === 0 ? a.url : b.url, key));

    expect(replies.map((r) => r.status)).toEqual([...Array(RPM).fill(200), ...Array(RPM).fill(429)]);
    expect(replies.slice(RPM).map((r) => r.code)).toEqual(Array(RPM).fill('rate_limit_requests'));
    // One counter: whichever replica answers, the remaining count falls by one per request.
    expect(replies.slice(0, RPM).map((r) => Number(r.remaining))).toEqual(
      Array.from({ length: RPM }, (_, i) => RPM - 1 - i),
    );
    expect(upstream.requests.length - before).toBe(RPM);
  });

  it('share one count of requests in flight per key: a request held on one refuses the next on the other', async () => {
    const [a, b] = replicas;
    const { key } = await issue('single');
    const before = upstream.requests.length;
    upstream.next({ kind: 'delay', ms: 1_000 });
    const held = chat(a.url, key);
    await eventually(async () => (upstream.requests.length > before ? true : null), 'the held request upstream');
    // Replica b has nothing in flight for this key: only the shared lease can refuse it.
    expect(await chat(b.url, key)).toMatchObject({ status: 429, code: 'rate_limit_concurrency' });
    expect((await held).status).toBe(200);
    expect((await chat(b.url, key)).status).toBe(200);
    expect(upstream.requests.length - before).toBe(2);
  });

  it('never charge more than the daily budget while requests race on both', async () => {
    const [a, b] = replicas;
    const { key, discordId } = await issue('budget');
    const total = 40;
    const replies: Array<Reply & { replica: 'a' | 'b' }> = [];
    let next = 0;
    const worker = async () => {
      while (next < total) {
        const i = next++;
        const replica = i % 2 === 0 ? 'a' : 'b';
        replies.push({ ...(await chat(replica === 'a' ? a.url : b.url, key)), replica });
      }
    };
    await Promise.all(Array.from({ length: 8 }, worker));

    const ok = replies.filter((r) => r.status === 200);
    const refused = replies.filter((r) => r.status !== 200);
    expect(replies).toHaveLength(total);
    expect(refused.map((r) => `${r.status} ${r.code}`)).toEqual(
      Array(refused.length).fill('429 daily_token_budget_exceeded'),
    );
    // 40 requests cost 320 tokens: most must be refused, and at most 10 fit.
    expect(ok.length).toBeGreaterThan(0);
    expect(ok.length).toBeLessThanOrEqual(BUDGET / COST);

    // A usage record is written after its request settled, so once both replicas flushed one per
    // answered request, every reservation has been replaced by its actual charge.
    const rows = await eventually(async () => {
      const list = await store.listUsage(discordId, 100);
      return list.length === ok.length ? list : null;
    }, `${ok.length} usage records from both replicas`);
    const charged = rows.reduce((sum: number, r: UsageRecord) => sum + r.chargedTokens, 0);
    const ledger = await ledgerUsed(discordId);
    console.log(
      `budget race: ${ok.length}/${total} answered (a: ${ok.filter((r) => r.replica === 'a').length}, ` +
        `b: ${ok.filter((r) => r.replica === 'b').length}), charged ${charged} of ${BUDGET}, Redis ledger ${ledger}`,
    );
    // The bound: a reservation is taken atomically in Redis (one Lua script) before forwarding and is
    // at least what the request is charged afterwards (the prompt estimate plus max_tokens covers the
    // fake's 8 tokens), so `used` never passes the budget at any moment: charged <= budget.
    expect(charged).toBeLessThanOrEqual(BUDGET);
    expect(charged).toBe(ok.length * COST);
    expect(ledger).toBe(charged);
  });

  it('stop a key revoked through the CLI within a second, though it sits in a 30 s cache', async () => {
    const [a, b] = replicas;
    const { key, id } = await issue('roomy');
    expect([await modelsStatus(a.url, key), await modelsStatus(b.url, key)]).toEqual([200, 200]);
    // Changed in the store without an event: both replicas keep answering from their caches, so only
    // the CLI's event can stop the key below in time.
    await store.updateKey(id, { status: 'suspended', statusReason: 'cache probe' }, ['active']);
    expect([await modelsStatus(a.url, key), await modelsStatus(b.url, key)]).toEqual([200, 200]);

    const cli = await procs.cli(dir, env, ['keys', 'revoke', id, '--reason', 'replica test']);
    const exitedAt = performance.now();
    expect(cli.code, cli.stderr).toBe(0);

    const until401 = (base: string) =>
      eventually(
        async () => ((await modelsStatus(base, key)) === 401 ? Math.round(performance.now() - exitedAt) : null),
        `401 from ${base}`,
        5_000,
      );
    const [msA, msB] = await Promise.all([until401(a.url), until401(b.url)]);
    console.log(
      `revocation via CLI: replica a answered 401 after ${msA} ms, replica b after ${msB} ms (from CLI exit)`,
    );
    expect(msA).toBeLessThan(1_000);
    expect(msB).toBeLessThan(1_000);
  });
});
