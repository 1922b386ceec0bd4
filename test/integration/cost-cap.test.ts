// The operator cost cap over HTTP: a real relay (SQLite, in-process limits, an injected clock) in
// front of the fake upstream, called with the official `openai` client. A low-share tier gets the
// capacity error while a higher tier is still served; the next budget day serves it again.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { issueKey } from '../../src/app/keys.js';
import { buildConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/logger.js';
import { type RunningRelay, startRelay } from '../../src/server.js';
import { type FakeUpstream, startFakeUpstream } from '../fakes/openai-upstream.js';
import { newDiscordId } from '../helpers/relay.js';

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

    clock.now = new Date('2030-06-02T00:00:01Z');
    const next = await ask(free, 5);
    expect(next.choices[0]?.message.content).toBeTruthy();
  });
});
