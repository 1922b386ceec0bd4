// The relay as API clients use it: the official `openai` client with only baseURL and apiKey changed.
import OpenAI, { type APIError } from 'openai';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { o200kTokenizer } from '../../src/adapters/tokenizer.js';
import { revokeKey, rotateKey } from '../../src/app/keys.js';
import { generateKey } from '../../src/domain/keys.js';
import { type FakeUpstream, startFakeUpstream } from '../fakes/openai-upstream.js';
import { chatPromptEstimate } from '../helpers/estimate.js';
import { startTestRelay, type TestRelay } from '../helpers/relay.js';

let primary: FakeUpstream;
let backup: FakeUpstream;
let t: TestRelay;

const hello = [{ role: 'user' as const, content: 'Say hello to the guild' }];

async function usageRows(keyId: string) {
  await t.relay.services.usage.flush();
  const key = await t.relay.services.store.getKeyById(keyId);
  return t.relay.services.store.listUsage(key!.discordId, 100);
}

/** An aborted request is recorded once the relay notices the disconnect: poll, bounded. */
async function waitForUsage(keyId: string) {
  let rows = await usageRows(keyId);
  for (let i = 0; i < 50 && rows.length === 0; i++) {
    await new Promise((r) => setTimeout(r, 50));
    rows = await usageRows(keyId);
  }
  return rows;
}

beforeAll(async () => {
  primary = await startFakeUpstream({ name: 'primary' });
  backup = await startFakeUpstream({ name: 'backup' });
  t = await startTestRelay({
    upstreams: { primary: primary.url, backup: backup.url },
    tiers: { free: {}, small: { rpm: 2, models: ['text-embedding-3-small'] } },
  });
});

afterAll(async () => {
  await t?.stop();
  await primary?.close();
  await backup?.close();
});

beforeEach(() => {
  primary.reset();
  backup.reset();
});

describe('chat completions through the openai client', () => {
  it('answers a non-streamed request and records metadata only', async () => {
    const { key, keyId } = await t.issue();
    const res = await t.client(key).chat.completions.create({ model: 'gpt-4o-mini', messages: hello });
    expect(res.object).toBe('chat.completion');
    expect(res.choices[0]?.message.content).toBe('hello from primary');
    expect(res.usage?.completion_tokens).toBe(3);
    // The upstream got the configured model id, a capped max_tokens and the relay's own auth, not the client's key.
    const sent = primary.requests[0]!;
    expect(sent.body).toMatchObject({ model: 'gpt-4o-mini', max_tokens: 256 });
    expect(String(sent.headers.authorization ?? '')).not.toContain(key);
    const rows = await usageRows(keyId);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({
      keyId,
      model: 'gpt-4o-mini',
      upstream: 'primary',
      promptTokens: res.usage?.prompt_tokens,
      completionTokens: 3,
      estimated: false,
      status: 'ok',
      stream: false,
    });
  });

  it('streams chunks and strips the usage chunk the client did not ask for', async () => {
    const { key, keyId } = await t.issue();
    const stream = await t.client(key).chat.completions.create({ model: 'gpt-4o-mini', messages: hello, stream: true });
    const chunks = [];
    for await (const c of stream) chunks.push(c);
    expect(chunks.map((c) => c.choices[0]?.delta.content ?? '').join('')).toBe('hello from primary');
    expect(chunks.every((c) => c.choices.length > 0)).toBe(true);
    // Upstream was asked for usage anyway, so the budget settles from real counts.
    expect(primary.requests[0]!.body).toMatchObject({ stream: true, stream_options: { include_usage: true } });
    const [row] = await usageRows(keyId);
    expect(row).toMatchObject({ stream: true, estimated: false, completionTokens: 3, status: 'ok' });
  });

  it('streams with include_usage and passes the usage chunk through', async () => {
    const { key } = await t.issue();
    const stream = await t.client(key).chat.completions.create({
      model: 'gpt-4o-mini',
      messages: hello,
      stream: true,
      stream_options: { include_usage: true },
    });
    let usage: OpenAI.CompletionUsage | null | undefined = null;
    for await (const c of stream) if (c.usage) usage = c.usage;
    expect(usage?.completion_tokens).toBe(3);
  });

  it('estimates usage with the tokenizer when the upstream reports none', async () => {
    const { key, keyId } = await t.issue();
    primary.next({ kind: 'ok', usage: false, text: 'one two three four' });
    const stream = await t.client(key).chat.completions.create({ model: 'gpt-4o-mini', messages: hello, stream: true });
    for await (const _ of stream);
    const [row] = await usageRows(keyId);
    expect(row).toMatchObject({ estimated: true, completionTokens: o200kTokenizer.count('one two three four') });
  });

  it('serves legacy completions and embeddings', async () => {
    const { key } = await t.issue();
    const c = await t.client(key).completions.create({ model: 'gpt-4o-mini', prompt: 'Once upon a time' });
    expect(c.object).toBe('text_completion');
    const e = await t.client(key).embeddings.create({ model: 'text-embedding-3-small', input: ['a', 'b'] });
    expect(e.data).toHaveLength(2);
    expect(e.usage.prompt_tokens).toBeGreaterThan(0);
  });
});

describe('models', () => {
  it("lists and retrieves only what the key's tier allows", async () => {
    const full = await t.issue();
    const ids = (await t.client(full.key).models.list()).data.map((m) => m.id).sort();
    expect(ids).toEqual(['gpt-4o-mini', 'text-embedding-3-small']);
    const small = await t.issue(undefined, 'small');
    const smallIds = (await t.client(small.key).models.list()).data.map((m) => m.id);
    expect(smallIds).toEqual(['text-embedding-3-small']);
    await expect(t.client(small.key).models.retrieve('gpt-4o-mini')).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    expect((await t.client(full.key).models.retrieve('gpt-4o-mini')).id).toBe('gpt-4o-mini');
  });
});

describe('refusals in OpenAI shape', () => {
  it('answers an unknown key and a revoked key identically with 401', async () => {
    const { key, keyId } = await t.issue();
    await revokeKey(t.relay.services.keys, { keyId, actor: 'test', reason: 'test' });
    // Well-formed with a valid checksum, so the relay must look it up to reject it.
    const unknown = generateKey().key;
    const errs: APIError[] = [];
    for (const k of [key, unknown]) {
      const err = await t
        .client(k)
        .chat.completions.create({ model: 'gpt-4o-mini', messages: hello })
        .catch((e) => e);
      expect(err).toBeInstanceOf(OpenAI.AuthenticationError);
      errs.push(err);
    }
    expect(errs[0]!.error).toEqual(errs[1]!.error);
    expect(errs[0]!.code).toBe('invalid_api_key');
    expect(primary.requests).toHaveLength(0);
  });

  it('stops the old key at once on rotation and accepts the new one', async () => {
    const { key, keyId } = await t.issue();
    await t.client(key).chat.completions.create({ model: 'gpt-4o-mini', messages: hello });
    const rotated = await rotateKey(t.relay.services.keys, { keyId, actor: 'test' });
    if (!rotated.ok) throw new Error(rotated.message);
    await expect(
      t.client(key).chat.completions.create({ model: 'gpt-4o-mini', messages: hello }),
    ).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
    const res = await t.client(rotated.key).chat.completions.create({ model: 'gpt-4o-mini', messages: hello });
    expect(res.choices[0]?.message.content).toBe('hello from primary');
  });

  it('gives 403 for a model outside the tier and 404 for an unknown model', async () => {
    const { key } = await t.issue(undefined, 'small');
    const forbidden = await t
      .client(key)
      .chat.completions.create({ model: 'gpt-4o-mini', messages: hello })
      .catch((e) => e);
    expect(forbidden).toBeInstanceOf(OpenAI.PermissionDeniedError);
    expect(forbidden.code).toBe('model_not_allowed');
    const unknown = await t
      .client(key)
      .chat.completions.create({ model: 'no-such-model', messages: hello })
      .catch((e) => e);
    expect(unknown).toBeInstanceOf(OpenAI.NotFoundError);
    expect(unknown.code).toBe('model_not_found');
  });

  it('surfaces the per-key request limit as RateLimitError with retry-after', async () => {
    const { key } = await t.issue(undefined, 'small');
    const c = t.client(key);
    await c.embeddings.create({ model: 'text-embedding-3-small', input: 'a' });
    const ok = await c.embeddings.create({ model: 'text-embedding-3-small', input: 'b' }).withResponse();
    expect(ok.response.headers.get('x-ratelimit-limit-requests')).toBe('2');
    expect(ok.response.headers.get('x-ratelimit-remaining-requests')).toBe('0');
    expect(ok.response.headers.get('x-ratelimit-limit-tokens')).toBe('1000000');
    const err = await c.embeddings.create({ model: 'text-embedding-3-small', input: 'c' }).catch((e) => e);
    expect(err).toBeInstanceOf(OpenAI.RateLimitError);
    expect(err.code).toBe('rate_limit_requests');
    const retryAfter = Number(err.headers.get('retry-after'));
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(60);
  });

  it('validates the body at the edge and names the parameter', async () => {
    const { key } = await t.issue();
    const res = await fetch(`${t.baseURL}/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o-mini', messages: [] }),
    });
    expect(res.status).toBe(400);
    const body = (await res.json()) as { error: unknown };
    expect(body).toEqual({
      error: { message: expect.any(String), type: 'invalid_request_error', param: 'messages', code: 'invalid_request' },
    });
    const bad = await fetch(`${t.baseURL}/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: '{"model":',
    });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { code: string } }).error.code).toBe('invalid_json');
    expect(primary.requests).toHaveLength(0);
  });

  it('refuses an oversized body with 413', async () => {
    const { key } = await t.issue();
    const huge = 'x'.repeat(3 * 1024 * 1024);
    const res = await fetch(`${t.baseURL}/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: huge }] }),
    });
    expect(res.status).toBe(413);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('request_too_large');
    // The same without a declared length (chunked): counted as it arrives.
    const chunk = new TextEncoder().encode('x'.repeat(256 * 1024));
    const body = new ReadableStream({
      start(c) {
        for (let i = 0; i < 12; i++) c.enqueue(chunk);
        c.close();
      },
    });
    const chunked = await fetch(`${t.baseURL}/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body,
      duplex: 'half',
    } as RequestInit);
    expect(chunked.status).toBe(413);
    expect(primary.requests).toHaveLength(0);
  });

  it('passes through unknown request fields untouched', async () => {
    const { key } = await t.issue();
    await t.client(key).chat.completions.create({
      model: 'gpt-4o-mini',
      messages: hello,
      temperature: 0.3,
      // @ts-expect-error a provider-specific field the relay does not know
      top_k: 7,
    });
    expect(primary.requests[0]!.body).toMatchObject({ temperature: 0.3, top_k: 7 });
  });
});

describe('upstream trouble', () => {
  it('fails over to the next upstream on a 500 before the first byte', async () => {
    const { key, keyId } = await t.issue();
    primary.next({ kind: 'error', status: 500 });
    const res = await t.client(key).chat.completions.create({ model: 'gpt-4o-mini', messages: hello });
    expect(res.choices[0]?.message.content).toBe('hello from backup');
    expect(primary.requests).toHaveLength(1);
    expect(backup.requests).toHaveLength(1);
    const [row] = await usageRows(keyId);
    expect(row).toMatchObject({ upstream: 'backup', status: 'ok' });
  });

  it('fails over on a connection reset and on 429', async () => {
    const { key } = await t.issue();
    primary.next({ kind: 'reset' });
    const a = await t.client(key).chat.completions.create({ model: 'gpt-4o-mini', messages: hello });
    expect(a.choices[0]?.message.content).toBe('hello from backup');
    primary.next({ kind: 'error', status: 429 });
    const b = await t.client(key).chat.completions.create({ model: 'gpt-4o-mini', messages: hello });
    expect(b.choices[0]?.message.content).toBe('hello from backup');
  });

  it('answers 502 when every upstream fails, charging nothing', async () => {
    const { key, keyId } = await t.issue();
    primary.next({ kind: 'error', status: 500 });
    backup.next({ kind: 'error', status: 503 });
    const err = await t
      .client(key)
      .chat.completions.create({ model: 'gpt-4o-mini', messages: hello })
      .catch((e) => e);
    expect(err).toBeInstanceOf(OpenAI.InternalServerError);
    expect(err.status).toBe(502);
    expect(err.code).toBe('upstream_error');
    const [row] = await usageRows(keyId);
    expect(row).toMatchObject({ status: 'upstream_error', chargedTokens: 0 });
  });

  it("reports the provider refusing the relay's own key as 502, without the provider's words", async () => {
    const { key } = await t.issue();
    primary.next({ kind: 'error', status: 401, message: 'Incorrect API key provided: sk-proj-****abcd' });
    const err = await t
      .client(key)
      .chat.completions.create({ model: 'gpt-4o-mini', messages: hello })
      .catch((e) => e);
    expect(err).toBeInstanceOf(OpenAI.InternalServerError);
    expect(err.status).toBe(502);
    expect(err.code).toBe('upstream_auth_failed');
    expect(err.message).not.toContain('sk-proj');
  });

  it('clamps every completion cap the client sends', async () => {
    const { key } = await t.issue();
    await t.client(key).chat.completions.create({
      model: 'gpt-4o-mini',
      messages: hello,
      max_tokens: 5000,
      max_completion_tokens: 100,
    });
    expect(primary.requests[0]!.body).toMatchObject({ max_tokens: 100, max_completion_tokens: 100 });
  });

  it('charges the prompt when the client gives up before the first byte', async () => {
    const { key, keyId } = await t.issue();
    primary.next({ kind: 'delay', ms: 1_000 });
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 200);
    await t
      .client(key)
      .chat.completions.create({ model: 'gpt-4o-mini', messages: hello }, { signal: controller.signal })
      .catch(() => {});
    const rows = await waitForUsage(keyId);
    expect(rows[0]).toMatchObject({ status: 'aborted', estimated: true, completionTokens: 0 });
    expect(rows[0]!.promptTokens).toBe(chatPromptEstimate(hello));
    expect(rows[0]!.chargedTokens).toBe(rows[0]!.promptTokens);
  });

  it('passes an upstream 4xx through in OpenAI shape', async () => {
    const { key } = await t.issue();
    primary.next({ kind: 'error', status: 400, message: 'Unsupported parameter: foo', code: 'unsupported_parameter' });
    const err = await t
      .client(key)
      .chat.completions.create({ model: 'gpt-4o-mini', messages: hello })
      .catch((e) => e);
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    expect(err.message).toContain('Unsupported parameter: foo');
    expect(backup.requests).toHaveLength(0);
  });

  it('ends a stream that dies mid-way with an error event', async () => {
    const { key, keyId } = await t.issue();
    primary.next({ kind: 'fail-mid-stream', afterChunks: 2 });
    const stream = await t.client(key).chat.completions.create({ model: 'gpt-4o-mini', messages: hello, stream: true });
    const seen: string[] = [];
    const err = await (async () => {
      for await (const c of stream) seen.push(c.choices[0]?.delta.content ?? '');
    })().catch((e) => e);
    expect(err).toBeInstanceOf(OpenAI.APIError);
    expect(String(err.message)).toContain('upstream stream failed');
    expect(seen.join('')).toBe('hello from');
    const [row] = await usageRows(keyId);
    expect(row).toMatchObject({ status: 'upstream_error', estimated: true });
    expect(row!.completionTokens).toBe(o200kTokenizer.count(seen.join('')));
  });

  it('charges what was delivered when the client disconnects mid-stream, and aborts the upstream', async () => {
    const { key, keyId } = await t.issue();
    primary.next({ kind: 'slow-stream', chunkDelayMs: 150 });
    const controller = new AbortController();
    const stream = await t
      .client(key)
      .chat.completions.create({ model: 'gpt-4o-mini', messages: hello, stream: true }, { signal: controller.signal });
    let delivered = '';
    await (async () => {
      for await (const c of stream) {
        delivered += c.choices[0]?.delta.content ?? '';
        if (delivered.length > 0) controller.abort();
      }
    })().catch(() => {});
    expect(delivered).toBe('hello');
    const rows = await waitForUsage(keyId);
    expect(rows[0]).toMatchObject({ status: 'aborted', estimated: true });
    // The relay counted what it forwarded; the client saw at least that much, possibly less if the abort raced a chunk.
    expect(rows[0]!.completionTokens).toBeGreaterThanOrEqual(o200kTokenizer.count(delivered));
    expect(rows[0]!.completionTokens).toBeLessThan(o200kTokenizer.count('hello from primary'));
    expect(primary.requests[0]!.state).toBe('aborted');
  });
});
