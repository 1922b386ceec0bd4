// Failed-authentication throttling over HTTP. The relay trusts one proxy hop, so each test speaks
// from its own address (X-Forwarded-For) on one shared relay.
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateKey } from '../../src/domain/keys.js';
import { type FakeUpstream, startFakeUpstream } from '../fakes/openai-upstream.js';
import { startTestRelay, type TestRelay } from '../helpers/relay.js';

const LIMIT = 3;
let upstream: FakeUpstream;
let t: TestRelay;

beforeAll(async () => {
  upstream = await startFakeUpstream({ name: 'up' });
  t = await startTestRelay({
    upstreams: { up: upstream.url },
    config: {
      server: { port: 0, host: '127.0.0.1', shutdownGraceMs: 5_000, trustProxy: 1 },
      limits: { authFailuresPerMinute: LIMIT },
    },
  });
});
afterAll(async () => {
  await t?.stop();
  await upstream?.close();
});

function call(ip: string, authorization?: string): Promise<Response> {
  const headers: Record<string, string> = { 'x-forwarded-for': ip };
  if (authorization !== undefined) headers.authorization = authorization;
  return fetch(`${t.baseURL}/models`, { headers });
}

async function expectThrottled(res: Response): Promise<void> {
  expect(res.status).toBe(429);
  expect(((await res.json()) as { error: { code: string } }).error.code).toBe('rate_limit_auth_failures');
  const retryAfter = Number(res.headers.get('retry-after'));
  expect(retryAfter).toBeGreaterThanOrEqual(1);
  expect(retryAfter).toBeLessThanOrEqual(60);
}

describe('failed authentication throttling', () => {
  it('refuses only failing attempts from a blocked address: a valid key from it is still served', async () => {
    const ip = '198.51.100.1';
    const { key } = await t.issue();
    for (let i = 0; i < LIMIT; i++) expect((await call(ip, `Bearer ${generateKey().key}`)).status).toBe(401);
    await expectThrottled(await call(ip, `Bearer ${generateKey().key}`));

    const client = new OpenAI({
      apiKey: key,
      baseURL: t.baseURL,
      maxRetries: 0,
      defaultHeaders: { 'x-forwarded-for': ip },
    });
    const { response } = await client.models.list().withResponse();
    expect(response.status).toBe(200);

    // Still blocked for bad keys, with a wait that never exceeds the one-minute window.
    for (let i = 0; i < 3; i++) await expectThrottled(await call(ip, `Bearer ${generateKey().key}`));
    expect((await call('198.51.100.2', `Bearer ${generateKey().key}`)).status).toBe(401);
  });

  it('counts malformed keys and missing or non-Bearer headers as failures', async () => {
    const malformed = [`Bearer ${generateKey().key.slice(0, -1)}`, 'Bearer gg_notakey', `Bearer gg_${'a'.repeat(300)}`];
    const noKey = [undefined, 'Basic dXNlcjpwYXNz', 'Bearer'];
    for (const [ip, attempts] of [
      ['198.51.100.3', malformed],
      ['198.51.100.4', noKey],
    ] as const) {
      for (const auth of attempts) expect((await call(ip, auth)).status, `${ip} ${auth}`).toBe(401);
      await expectThrottled(await call(ip, attempts[0]));
    }
  });
});
