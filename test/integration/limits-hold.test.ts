// Limits that hold against every request shape a key holder can send, over HTTP against a running
// relay: cheap checks before any costly work, reservations that bound what a request can be
// billed, nothing charged for a request that never left, and a day that survives Redis losing it.
import { request } from 'node:http';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createRedis, type RedisClient, waitForReady } from '../../src/adapters/redis/client.js';
import { budgetSubject } from '../../src/app/admission.js';
import { type FakeUpstream, startFakeUpstream } from '../fakes/openai-upstream.js';
import { type RedisServer, startRedis } from '../helpers/redis-server.js';
import { startTestRelay, type TestRelay } from '../helpers/relay.js';

let upstream: FakeUpstream;
let redis: RedisServer;
let admin: RedisClient;
const relays: TestRelay[] = [];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const cjk = (n: number) =>
  Array.from({ length: n }, (_, i) => String.fromCharCode(0x4e00 + ((i * 7919) % 20_000))).join('');

beforeAll(async () => {
  upstream = await startFakeUpstream({ name: 'up' });
  redis = await startRedis();
  admin = createRedis(redis.url);
  await waitForReady(admin, 10_000);
});
afterEach(() => upstream.reset());
afterAll(async () => {
  await Promise.all(relays.map((r) => r.stop()));
  admin?.disconnect();
  await redis?.stop();
  await upstream?.close();
});

async function relay(tier: Record<string, number>, limits: 'memory' | 'redis' = 'memory'): Promise<TestRelay> {
  const r = await startTestRelay({
    upstreams: { up: upstream.url },
    tiers: { free: tier },
    config: { storage: { store: 'sqlite', limits } },
    env: limits === 'redis' ? { REDIS_URL: redis.url } : {},
  });
  relays.push(r);
  return r;
}

async function post(t: TestRelay, key: string, path: string, body: string | object) {
  const res = await fetch(`${t.baseURL}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as { error: Record<string, unknown> } };
}

const chat = (content: string, extra: object = {}) => ({
  model: 'gpt-4o-mini',
  messages: [{ role: 'user', content }],
  ...extra,
});

async function spentToday(t: TestRelay, discordId: string): Promise<number> {
  const { day } = t.relay.services.limits.calendar.at(new Date());
  return t.relay.services.limits.budget.used(budgetSubject(discordId), day);
}

describe.each(['memory', 'redis'] as const)('the cheap limits come before the body is read (%s limits)', (limits) => {
  it('a key over its requests per minute gets 429, not a parse error, for a body it never parses', async () => {
    const t = await relay({ rpm: 1 }, limits);
    const { key } = await t.issue();
    expect((await post(t, key, '/chat/completions', chat('hi'))).status).toBe(200);
    // Two megabytes of invalid JSON: had the relay read it, the answer would be 400 or 413.
    const junk = `{"messages": "${'x'.repeat(2 * 1024 * 1024)}`;
    const refused = await post(t, key, '/chat/completions', junk);
    expect(refused.status).toBe(429);
    expect(refused.body.error.code).toBe('rate_limit_requests');
    expect(upstream.requests).toHaveLength(1);
  });

  it('a key at its concurrency cap gets 429 for a body it never parses', async () => {
    const t = await relay({ maxConcurrent: 1 }, limits);
    const { key } = await t.issue();
    upstream.next({ kind: 'delay', ms: 800 });
    const held = post(t, key, '/chat/completions', chat('hi'));
    for (let i = 0; i < 100 && upstream.requests.length === 0; i++) await sleep(10);
    const refused = await post(t, key, '/chat/completions', '{not json');
    expect(refused.status).toBe(429);
    expect(refused.body.error.code).toBe('rate_limit_concurrency');
    expect((await held).status).toBe(200);
    // The slot is free again once the held request is done; a bad body now gets its 400.
    expect((await post(t, key, '/chat/completions', '{not json')).status).toBe(400);
  });
});

describe('a reservation bounds what the request can be billed', () => {
  it('legacy completions: every prompt of a list gets its own completions within the budget', async () => {
    const t = await relay({ tokensPerDay: 1000, maxTokens: 256 });
    const { key } = await t.issue();
    // 50 one-token prompts asking for 256 tokens each, two generated per prompt (best_of).
    const prompt = Array.from({ length: 50 }, () => 'hi');
    const r = await post(t, key, '/completions', { model: 'gpt-4o-mini', prompt, max_tokens: 256, best_of: 2 });
    expect(r.status).toBe(200);
    const sent = upstream.requests[0]!.body as { max_tokens: number };
    // At most 50 prompt tokens plus 100 completions of max_tokens each may be billed.
    expect(50 + 100 * sent.max_tokens).toBeLessThanOrEqual(1000);
    expect(sent.max_tokens).toBeGreaterThanOrEqual(1);
  });

  it('a prompt of spaces and CJK text is reserved in full, so it cannot pass a budget it exceeds', async () => {
    // Exact size about 114K tokens; it was once estimated at 1,663 and admitted on a 100K day.
    const t = await relay({ tokensPerDay: 100_000 });
    const { key } = await t.issue();
    const r = await post(t, key, '/chat/completions', chat(`${' '.repeat(32_768)}${cjk(60_000)}`));
    expect(r.status).toBe(429);
    expect(r.body.error.code).toBe('daily_token_budget_exceeded');
    expect(upstream.requests).toHaveLength(0);
  });

  it('refuses content it cannot bound with a 400 naming the part', async () => {
    const t = await relay({});
    const { key } = await t.issue();
    const r = await post(t, key, '/chat/completions', {
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: [{ type: 'file', file: { file_id: 'file-abc' } }] }],
    });
    expect(r.status).toBe(400);
    expect(r.body.error).toMatchObject({ code: 'unsupported_content_part', param: 'messages[0].content[0].type' });
  });

  it('refuses lists longer than OpenAI accepts before walking them', async () => {
    const t = await relay({});
    const { key } = await t.issue();
    const r = await post(t, key, '/embeddings', { model: 'text-embedding-3-small', input: Array(3000).fill('a') });
    expect(r.status).toBe(400);
    expect(r.body.error).toMatchObject({ code: 'array_above_max_length', param: 'input' });
  });
});

describe('a client gone before anything was sent upstream is charged nothing', () => {
  it('disconnecting while the token reservation is pending', async () => {
    const t = await relay({}, 'redis');
    const { key, keyId, discordId } = await t.issue();
    const body = JSON.stringify(chat('Say hello to the guild'));
    const url = new URL(`${t.baseURL}/chat/completions`);
    const req = request({
      host: url.hostname,
      port: url.port,
      path: url.pathname,
      method: 'POST',
      headers: {
        authorization: `Bearer ${key}`,
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(body),
      },
    });
    req.on('error', () => {});
    // Headers first: the request passes its rate and concurrency checks.
    req.write(body.slice(0, 10));
    await sleep(300);
    // Redis holds writes for 800 ms: the reservation asked for once the body is in waits for it.
    await admin.call('CLIENT', 'PAUSE', '800', 'WRITE');
    req.end(body.slice(10));
    await sleep(200);
    req.destroy();
    let rows = await t.relay.services.store.listUsage(discordId, 10);
    for (let i = 0; i < 60 && rows.length === 0; i++) {
      await sleep(50);
      await t.relay.services.usage.flush();
      rows = await t.relay.services.store.listUsage(discordId, 10);
    }
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ keyId, status: 'aborted', promptTokens: 0, completionTokens: 0, chargedTokens: 0 });
    expect(upstream.requests).toHaveLength(0);
    expect(await spentToday(t, discordId)).toBe(0);
  });
});

describe('Redis restarted empty', () => {
  it('rebuilds the day from the usage records: a spent budget stays spent', async () => {
    const own = await startRedis();
    const t = await startTestRelay({
      upstreams: { up: upstream.url },
      tiers: { free: { tokensPerDay: 1500, maxTokens: 16 } },
      config: { storage: { store: 'sqlite', limits: 'redis' } },
      env: { REDIS_URL: own.url },
    });
    try {
      const { key, discordId } = await t.issue();
      // The fake upstream bills one token per word: 600 + the reply's words per request.
      const words = 'word '.repeat(600);
      for (let i = 0; i < 2; i++) expect((await post(t, key, '/chat/completions', chat(words))).status).toBe(200);
      const spent = await spentToday(t, discordId);
      expect(spent).toBeGreaterThan(1200);
      await t.relay.services.usage.flush();

      await own.restart();
      const check = createRedis(own.url);
      await waitForReady(check, 15_000);
      expect(await check.dbsize()).toBe(0);
      check.disconnect();

      // The third request cannot fit in what is left of the day; Redis alone would have said 0 used.
      let r = await post(t, key, '/chat/completions', chat(words));
      for (let i = 0; i < 40 && r.status === 503; i++) {
        await sleep(100);
        r = await post(t, key, '/chat/completions', chat(words));
      }
      expect(r.status).toBe(429);
      expect(r.body.error.code).toBe('daily_token_budget_exceeded');
      expect(await spentToday(t, discordId)).toBe(spent);
    } finally {
      await t.stop();
      await own.stop();
    }
  });
});
