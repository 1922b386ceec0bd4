// The operator cost cap over HTTP: a real relay (SQLite, in-process limits, an injected clock) in
// front of the fake upstream, called with the official `openai` client. A low-share tier gets the
// capacity error while a higher tier is still served; the next budget day serves it again. Then
// `guildgate cost` as a script runs it, on a SQLite file holding today's usage.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRedis, waitForReady } from '../../src/adapters/redis/client.js';
import { RedisTokenBudget } from '../../src/adapters/redis/limits.js';
import { SqliteStore } from '../../src/adapters/sqlite/sqlite-store.js';
import { issueKey } from '../../src/app/keys.js';
import { buildConfig } from '../../src/config/load.js';
import { budgetDay } from '../../src/domain/budget-day.js';
import { createLogger } from '../../src/logger.js';
import { type RunningRelay, startRelay } from '../../src/server.js';
import { type FakeUpstream, startFakeUpstream } from '../fakes/openai-upstream.js';
import { runCli } from '../helpers/cli.js';
import { startRedis } from '../helpers/redis-server.js';
import { newDiscordId } from '../helpers/relay.js';
import { usageRecord } from '../helpers/usage.js';

const CAP = 1000;
const clock = { now: new Date('2030-06-01T12:00:00Z') };
let upstream: FakeUpstream;
let relay: RunningRelay;
let dataDir: string;

beforeAll(async () => {
  upstream = await startFakeUpstream({ name: 'up' });
  dataDir = mkdtempSync(join(tmpdir(), 'gg-costcap-'));
  const tier = { rpm: 1000, maxConcurrent: 10, tokensPerDay: 1_000_000, maxTokens: 1000 };
  const config = buildConfig(
    {
      server: { port: 0, host: '127.0.0.1', shutdownGraceMs: 5_000 },
      dataDir,
      storage: { store: 'sqlite', limits: 'memory' },
      defaultTier: 'free',
      tiers: { free: { ...tier, capShare: 0.5 }, staff: tier },
      upstreams: { up: { baseUrl: upstream.url } },
      models: { 'gpt-4o-mini': { routes: [{ upstream: 'up', model: 'gpt-4o-mini' }] } },
      costCap: { relay: { tokensPerDay: CAP } },
      usage: { flushIntervalMs: 50 },
    },
    { LOG_LEVEL: 'warn' },
    'test',
  );
  const quiet = new Writable({ write: (_c, _e, cb) => cb() });
  relay = await startRelay(config, { log: createLogger('warn', quiet), now: () => clock.now });
});

afterAll(async () => {
  await relay?.stop();
  await upstream?.close();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

async function client(tier: 'free' | 'staff'): Promise<OpenAI> {
  const r = await issueKey(relay.services.keys, { discordId: newDiscordId(), tier, actor: 'test' });
  if (!r.ok) throw new Error(r.message);
  return new OpenAI({ apiKey: r.key, baseURL: `${relay.url}/v1`, maxRetries: 0, timeout: 20_000 });
}

const ask = (c: OpenAI, maxTokens: number) =>
  c.chat.completions.create({
    model: 'gpt-4o-mini',
    messages: [{ role: 'user', content: 'hi' }],
    max_tokens: maxTokens,
  });

describe('cost cap over HTTP', () => {
  it('sheds the low-share tier with 503 relay_capacity_reached, serves the top tier, and resets at midnight', async () => {
    const free = await client('free');
    const staff = await client('staff');
    // Below half the cap both tiers are served.
    await expect(ask(free, 5)).resolves.toBeDefined();
    // A staff answer of 600 words takes the relay past the free tier's half of the cap.
    upstream.next({ kind: 'ok', text: 'word '.repeat(600) });
    const big = await ask(staff, 700);
    expect(big.usage?.completion_tokens).toBe(600);

    const err = await ask(free, 5).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(OpenAI.APIError);
    const apiErr = err as InstanceType<typeof OpenAI.APIError>;
    expect(apiErr.status).toBe(503);
    expect(apiErr.code).toBe('relay_capacity_reached');
    expect(apiErr.type).toBe('service_unavailable');
    expect(apiErr.message).toContain(`The relay's daily capacity for the "free" tier is used up.`);
    expect(apiErr.message).toContain('It resets in 12h0m0s (2030-06-02T00:00:00.000Z)');
    // Members are told when, never how much the relay spent.
    expect(apiErr.message).not.toMatch(/\b(1000|500|6\d\d)\b/);
    expect(apiErr.headers?.get('retry-after')).toBe(String(12 * 3600));

    // The top tier may use the whole cap.
    await expect(ask(staff, 5)).resolves.toBeDefined();

    // Metrics show the ledger as the limiter holds it, and the cap.
    const spent = await relay.services.limits.budget.used('cap:tokens:relay', '2030-06-01');
    expect(spent).toBeGreaterThan(CAP / 2);
    const { body } = await relay.services.metrics.scrape();
    expect(body).toContain(`guildgate_cost_cap_spent{scope="relay",unit="tokens"} ${spent}\n`);
    expect(body).toContain(`guildgate_cost_cap_limit{scope="relay",unit="tokens"} ${CAP}\n`);

    clock.now = new Date('2030-06-02T00:00:01Z');
    const next = await ask(free, 5);
    expect(next.choices[0]?.message.content).toBeTruthy();
  });
});

describe('guildgate cost', () => {
  let dir: string;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'gg-costcli-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  function configFile(name: string, extra: Record<string, unknown>): string {
    const file = join(dir, name);
    const tier = { rpm: 10, tokensPerDay: 100_000 };
    const cfg = {
      dataDir: join(dir, 'data'),
      storage: { store: 'sqlite', limits: 'memory' },
      tiers: { free: { ...tier, capShare: 0.5 }, staff: tier },
      upstreams: { alpha: { baseUrl: 'https://a.example/v1' }, beta: { baseUrl: 'https://b.example/v1' } },
      models: {
        cheap: { routes: [{ upstream: 'alpha', model: 'c' }], price: { inputPerMTokens: 1, outputPerMTokens: 2 } },
        premium: {
          routes: [{ upstream: 'beta', model: 'p' }],
          tokenWeight: 3,
          price: { inputPerMTokens: 10, outputPerMTokens: 30 },
        },
      },
      ...extra,
    };
    writeFileSync(file, JSON.stringify(cfg));
    return file;
  }

  it("shows today's spend against each cap, the tier shares and which tiers are shed", async () => {
    const capped = configFile('capped.json', {
      costCap: { relay: { tokensPerDay: 1000, currencyPerDay: 0.01 }, upstreams: { beta: { tokensPerDay: 200 } } },
    });
    const store = SqliteStore.open(join(dir, 'data', 'guildgate.db'));
    const now = new Date();
    await store.insertUsage(
      [
        usageRecord({ discordId: newDiscordId(), model: 'cheap', createdAt: now, chargedTokens: 600 }),
        usageRecord({
          discordId: newDiscordId(),
          model: 'premium',
          createdAt: now,
          promptTokens: 50,
          completionTokens: 50,
          chargedTokens: 300,
        }),
      ],
      (r) => budgetDay(r.createdAt, 'UTC'),
    );
    await store.close();

    const [asJson, asText] = await Promise.all([
      runCli(['cost', '--json'], { GUILDGATE_CONFIG: capped }),
      runCli(['cost'], { GUILDGATE_CONFIG: capped }),
    ]);
    expect(asJson.code, asJson.stderr).toBe(0);
    const data = JSON.parse(asJson.stdout);
    expect(data.day).toBe(budgetDay(now, 'UTC'));
    expect(data.source).toBe('usage records');
    expect(data.ledgers).toEqual([
      { scope: 'relay', unit: 'tokens', cap: 1000, spent: 900, recorded: 900, live: null },
      // 600 × 1 + (50 × 10 + 50 × 30) millionths.
      { scope: 'relay', unit: 'currency', cap: 0.01, spent: 0.0026, recorded: 0.0026, live: null },
      { scope: 'upstream:beta', unit: 'tokens', cap: 200, spent: 300, recorded: 300, live: null },
    ]);
    expect(data.tiers).toEqual([
      { tier: 'free', capShare: 0.5, shedOn: ['relay tokens', 'upstream:beta tokens'] },
      { tier: 'staff', capShare: 1, shedOn: ['upstream:beta tokens'] },
    ]);

    expect(asText.code, asText.stderr).toBe(0);
    const lines = asText.stdout.split('\n').map((l) => l.replace(/\s+/g, ' ').trim());
    expect(lines[0]).toMatch(/^Cost cap on \d{4}-\d{2}-\d{2} \(resets in .+\); spend from usage records$/);
    expect(lines).toEqual(
      expect.arrayContaining([
        'cap spent of used',
        'relay tokens 900 1000 90.0%',
        'relay currency 0.0026 USD 0.01 USD 26.0%',
        'upstream:beta tokens 300 200 150.0%',
        'tier share refused',
        'free 0.5 on relay tokens, upstream:beta tokens',
        'staff 1 on upstream:beta tokens',
      ]),
    );
  });

  it('with Redis, counts what the shared ledgers hold beyond the records (requests in flight)', async () => {
    const redis = await startRedis();
    const client = createRedis(redis.url);
    try {
      await waitForReady(client, 10_000);
      const day = budgetDay(new Date(), 'UTC');
      // A replica holds a reservation not yet settled: 950 on the relay's token ledger.
      await new RedisTokenBudget(client).reserve({
        subject: 'cap:tokens:relay',
        day,
        requestId: 'req_inflight',
        min: 950,
        max: 950,
        limit: 1000,
      });
      const withRedis = configFile('redis.json', {
        storage: { store: 'sqlite', limits: 'redis' },
        costCap: { relay: { tokensPerDay: 1000 } },
      });
      const run = await runCli(['cost', '--json'], { GUILDGATE_CONFIG: withRedis, REDIS_URL: redis.url });
      expect(run.code, run.stderr).toBe(0);
      const data = JSON.parse(run.stdout);
      expect(data.source).toBe('redis ledgers and usage records');
      // The records of the test above say 900; the ledger knows 950.
      expect(data.ledgers).toEqual([
        { scope: 'relay', unit: 'tokens', cap: 1000, spent: 950, recorded: 900, live: 950 },
      ]);
      expect(data.tiers).toEqual([
        { tier: 'free', capShare: 0.5, shedOn: ['relay tokens'] },
        { tier: 'staff', capShare: 1, shedOn: [] },
      ]);
    } finally {
      client.disconnect();
      await redis.stop();
    }
  });

  it('says so when no cap is configured', async () => {
    const run = await runCli(['cost'], { GUILDGATE_CONFIG: configFile('plain.json', {}) });
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toBe('No cost cap configured (see costCap in the config).\n');
  });
});
