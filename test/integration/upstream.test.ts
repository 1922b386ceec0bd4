import { once } from 'node:events';
import { createServer } from 'node:net';
import OpenAI from 'openai';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { startDemoUpstream } from '../../src/adapters/upstream/demo-upstream.js';
import { UndiciUpstream } from '../../src/adapters/upstream/undici-upstream.js';
import { forward } from '../../src/app/forward.js';
import { upstreamSchema } from '../../src/config/schema.js';
import { Cancellation } from '../../src/domain/cancellation.js';
import { UpstreamTimeoutError, UpstreamUnavailableError } from '../../src/domain/errors.js';
import type { UpstreamCall, UpstreamResponse } from '../../src/domain/ports.js';
import { type SseEvent, SseParser } from '../../src/domain/sse.js';
import { type FakeUpstream, startFakeUpstream } from '../fakes/openai-upstream.js';

const KEY = 'sk-upstream-secret-123';
const CHAT = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'one two three' }] };

let fake: FakeUpstream;
const opened: UndiciUpstream[] = [];

function upstream(
  baseUrl: string,
  opts: { timeouts?: Record<string, number>; key?: string; name?: string } = {},
): UndiciUpstream {
  const name = opts.name ?? 'main';
  const cfg = upstreamSchema.parse({ baseUrl, timeouts: opts.timeouts ?? {}, connections: 4 });
  const u = new UndiciUpstream({ [name]: cfg }, { [name]: opts.key });
  opened.push(u);
  return u;
}

function call(overrides: Partial<UpstreamCall> = {}): UpstreamCall {
  return {
    upstream: 'main',
    path: '/chat/completions',
    method: 'POST',
    body: CHAT,
    requestId: 'req_test1',
    cancellation: new Cancellation(),
    ...overrides,
  };
}

async function text(res: UpstreamResponse): Promise<string> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of res.body) chunks.push(chunk);
  return Buffer.concat(chunks).toString('utf8');
}

/** A port nothing listens on: bound once, then released. */
async function closedPort(): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  server.close();
  await once(server, 'close');
  return port;
}

beforeAll(async () => {
  fake = await startFakeUpstream({ name: 'fake' });
});
afterEach(async () => {
  await Promise.all(opened.splice(0).map((u) => u.close()));
  fake.reset();
});
afterAll(async () => {
  await fake.close();
});

describe('UndiciUpstream against the fake provider', () => {
  it('returns a JSON completion with status, lower-case headers and body', async () => {
    const res = await upstream(fake.url).send(call());
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe('application/json');
    expect(res.headers['x-request-id']).toMatch(/^req_/);
    const body = JSON.parse(await text(res));
    expect(body).toMatchObject({
      object: 'chat.completion',
      model: 'gpt-4o-mini',
      choices: [{ index: 0, message: { role: 'assistant', content: 'hello from fake' }, finish_reason: 'stop' }],
      usage: { prompt_tokens: 3, completion_tokens: 3, total_tokens: 6 },
    });
    expect(body.id).toMatch(/^chatcmpl-/);
    expect(fake.requests).toHaveLength(1);
    expect(fake.requests[0]).toMatchObject({ method: 'POST', path: '/v1/chat/completions', body: CHAT });
  });

  it('sends its own headers only: key, request id, JSON content type', async () => {
    await text(await upstream(fake.url, { key: KEY }).send(call({ requestId: 'req_abc' })));
    const headers = fake.requests[0]!.headers;
    expect(headers.authorization).toBe(`Bearer ${KEY}`);
    expect(headers['x-request-id']).toBe('req_abc');
    expect(headers['content-type']).toBe('application/json');
    expect(headers.accept).toContain('text/event-stream');
    expect(headers['accept-encoding']).toBe('identity');
    // Nothing that could come from a client (cookies, its relay key, forwarded-for...).
    const own = ['accept', 'accept-encoding', 'authorization', 'connection', 'content-length', 'content-type', 'host'];
    expect(Object.keys(headers).filter((h) => !own.includes(h) && h !== 'x-request-id')).toEqual([]);
  });

  it('omits authorization when no key is configured, and GET has no content type', async () => {
    const res = await upstream(fake.url).send(call({ method: 'GET', path: '/models', body: undefined }));
    expect(JSON.parse(await text(res)).data.map((m: { id: string }) => m.id)).toContain('gpt-4o-mini');
    expect(fake.requests[0]!.headers.authorization).toBeUndefined();
    expect(fake.requests[0]!.headers['content-type']).toBeUndefined();
  });

  it('returns a provider 401 for a wrong key as a status', async () => {
    const guarded = await startFakeUpstream({ name: 'guarded', apiKey: KEY });
    try {
      const wrong = await upstream(guarded.url, { key: 'sk-wrong' }).send(call());
      expect(wrong.status).toBe(401);
      expect(JSON.parse(await text(wrong)).error.code).toBe('invalid_api_key');
      const right = await upstream(guarded.url, { key: KEY }).send(call());
      expect(right.status).toBe(200);
      await text(right);
    } finally {
      await guarded.close();
    }
  });

  it('returns 500 and 429 as statuses with OpenAI error bodies and rate-limit headers', async () => {
    const u = upstream(fake.url);
    fake.next({ kind: 'error', status: 500 });
    fake.next({ kind: 'error', status: 429, headers: { 'retry-after': '7' } });

    const failed = await u.send(call());
    expect(failed.status).toBe(500);
    expect(JSON.parse(await text(failed))).toEqual({
      error: { message: expect.any(String), type: 'server_error', param: null, code: null },
    });

    const limited = await u.send(call());
    expect(limited.status).toBe(429);
    expect(limited.headers['retry-after']).toBe('7');
    expect(limited.headers['x-ratelimit-remaining-requests']).toBe('0');
    expect(JSON.parse(await text(limited)).error).toMatchObject({ type: 'requests', code: 'rate_limit_exceeded' });
  });

  it('streams bytes as they arrive: the first chunk comes while the provider is still writing', async () => {
    fake.next({ kind: 'slow-stream', chunkDelayMs: 300 });
    const res = await upstream(fake.url).send(
      call({ body: { ...CHAT, stream: true, stream_options: { include_usage: true } } }),
    );
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toContain('text/event-stream');

    const parser = new SseParser();
    const events: SseEvent[] = [];
    let stateAtFirstChunk: string | undefined;
    let eventsAtFirstChunk = 0;
    for await (const chunk of res.body) {
      events.push(...parser.push(chunk));
      if (stateAtFirstChunk === undefined) {
        stateAtFirstChunk = fake.requests[0]!.state;
        eventsAtFirstChunk = events.length;
      }
    }
    events.push(...parser.end());

    expect(stateAtFirstChunk).toBe('open');
    expect(eventsAtFirstChunk).toBeLessThan(events.length);
    expect(events.at(-1)!.data).toBe('[DONE]');
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e.data));
    expect(chunks.every((c) => c.object === 'chat.completion.chunk' && c.id === chunks[0].id)).toBe(true);
    const content = chunks.slice(0, -1);
    expect(content.map((c) => c.choices[0].delta.content).join('')).toBe('hello from fake');
    expect(content[0].choices[0].delta.role).toBe('assistant');
    expect(content.map((c) => c.choices[0].finish_reason)).toEqual([null, null, 'stop']);
    expect(chunks.at(-1)).toMatchObject({
      choices: [],
      usage: { prompt_tokens: 3, completion_tokens: 3, total_tokens: 6 },
    });
  });

  it('throws UpstreamUnavailableError naming the upstream when the connection is refused', async () => {
    const port = await closedPort();
    const u = upstream(`http://127.0.0.1:${port}/v1`, { key: KEY, name: 'local-llm' });
    const err = await u.send(call({ upstream: 'local-llm' })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UpstreamUnavailableError);
    const message = (err as Error).message;
    expect(message).toContain('local-llm');
    expect(message).not.toContain(String(port));
    expect(message).not.toContain(KEY);
  });

  it('throws UpstreamUnavailableError when the provider resets before headers', async () => {
    fake.next({ kind: 'reset' });
    await expect(upstream(fake.url).send(call())).rejects.toBeInstanceOf(UpstreamUnavailableError);
    expect(fake.requests).toHaveLength(1);
  });

  it('throws UpstreamTimeoutError when headers do not come within firstByteMs', async () => {
    fake.next({ kind: 'hang' });
    const err = await upstream(fake.url, { timeouts: { firstByteMs: 300 } })
      .send(call())
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UpstreamTimeoutError);
    expect((err as Error).message).toContain('main');
  });

  it('throws from the body iterator when the stream stalls longer than idleMs', async () => {
    fake.next({ kind: 'hang-after-first-chunk' });
    const res = await upstream(fake.url, { timeouts: { idleMs: 300 } }).send(call({ body: { ...CHAT, stream: true } }));
    expect(res.status).toBe(200);
    const parser = new SseParser();
    const events: SseEvent[] = [];
    const err = await (async () => {
      for await (const chunk of res.body) events.push(...parser.push(chunk));
    })().catch((e: unknown) => e);
    expect((err as { code?: string }).code).toBe('UND_ERR_BODY_TIMEOUT');
    // The first chunk got through before the stall.
    expect(events.map((e) => JSON.parse(e.data).choices[0].delta.content)).toEqual(['hello']);
  });

  it('throws from the body iterator when the socket dies mid-stream', async () => {
    fake.next({ kind: 'fail-mid-stream', afterChunks: 2 });
    const res = await upstream(fake.url).send(call({ body: { ...CHAT, stream: true } }));
    const parser = new SseParser();
    const events: SseEvent[] = [];
    const err = await (async () => {
      for await (const chunk of res.body) events.push(...parser.push(chunk));
    })().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect(events).toHaveLength(2);
  });

  it('aborts a request waiting for headers and rethrows the abort as is', async () => {
    fake.next({ kind: 'hang' });
    const cancellation = new Cancellation();
    const pending = upstream(fake.url).send(call({ cancellation }));
    await vi.waitFor(() => expect(fake.requests).toHaveLength(1), { timeout: 5_000, interval: 10 });
    cancellation.abort();
    const err = await pending.catch((e: unknown) => e);
    expect((err as Error).name).toBe('AbortError');
    expect(err).not.toBeInstanceOf(UpstreamUnavailableError);
    await vi.waitFor(() => expect(fake.requests[0]!.state).toBe('aborted'), { timeout: 5_000, interval: 10 });
  });

  it('aborts a streaming body: the iterator throws AbortError and the provider sees the close', async () => {
    fake.next({ kind: 'slow-stream', chunkDelayMs: 200 });
    const cancellation = new Cancellation();
    const res = await upstream(fake.url).send(call({ body: { ...CHAT, stream: true }, cancellation }));
    let chunks = 0;
    const err = await (async () => {
      for await (const _ of res.body) {
        chunks++;
        cancellation.abort();
      }
    })().catch((e: unknown) => e);
    expect(chunks).toBe(1);
    expect((err as Error).name).toBe('AbortError');
    await vi.waitFor(() => expect(fake.requests[0]!.state).toBe('aborted'), { timeout: 5_000, interval: 10 });
  });

  it('cancel() drops an unread body and frees the pool for the next request', async () => {
    fake.next({ kind: 'hang-after-first-chunk' });
    const u = upstream(fake.url);
    const res = await u.send(call({ body: { ...CHAT, stream: true } }));
    res.cancel();
    await vi.waitFor(() => expect(fake.requests[0]!.state).toBe('aborted'), { timeout: 5_000, interval: 10 });
    const after = await u.send(call());
    expect(after.status).toBe(200);
    await text(after);
  });

  it('joins a base URL path prefix with the call path, trailing slash or not', async () => {
    const origin = new URL(fake.url).origin;
    await text(await upstream(`${origin}/v1/`).send(call({ path: '/models', method: 'GET', body: undefined })));
    const prefixed = await upstream(`${origin}/proxy/openai/v1`).send(call());
    expect(prefixed.status).toBe(404);
    await text(prefixed);
    expect(fake.requests.map((r) => r.path)).toEqual(['/v1/models', '/proxy/openai/v1/chat/completions']);
  });

  it('reuses keep-alive connections for sequential requests', async () => {
    const before = fake.connections;
    const u = upstream(fake.url);
    for (let i = 0; i < 6; i++) {
      const res = await u.send(call());
      expect(res.status).toBe(200);
      await text(res);
    }
    // undici may hand the next request to a second idle connection while the first is being
    // released, so sequential traffic settles on at most two sockets, never one per request.
    expect(fake.connections - before).toBeLessThanOrEqual(2);
    expect(new Set(fake.requests.map((r) => r.connection)).size).toBeLessThanOrEqual(2);
    expect(fake.requests).toHaveLength(6);
  });

  it('gives header names in lower case and joins a header sent more than once', async () => {
    fake.next({
      kind: 'raw',
      status: 200,
      headers: { 'Content-Type': 'application/json', 'X-Seen': ['a', 'b'] },
      body: '{}',
    });
    const res = await upstream(fake.url).send(call());
    expect(res.headers['content-type']).toBe('application/json');
    expect(res.headers['x-seen']).toBe('a, b');
    expect((await res.read(1024)).toString('utf8')).toBe('{}');
  });

  it('read() returns the whole body; a body is read only once', async () => {
    const res = await upstream(fake.url).send(call());
    const raw = await res.read(1024 * 1024);
    expect(JSON.parse(raw.toString('utf8'))).toMatchObject({ object: 'chat.completion' });
    await expect(res.read(1024)).rejects.toThrow('read only once');
  });

  it('read() past its limit rejects, drops the connection and leaves the pool usable', async () => {
    fake.next({ kind: 'huge', bytes: 2 * 1024 * 1024 });
    const u = upstream(fake.url);
    const res = await u.send(call());
    const err = await res.read(256 * 1024).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UpstreamUnavailableError);
    expect((err as Error).message).toBe('The upstream response was too large.');
    const after = await u.send(call());
    expect(JSON.parse((await after.read(1024 * 1024)).toString('utf8'))).toMatchObject({ object: 'chat.completion' });
  });

  it('a reader slower than the provider still gets every byte, in order', async () => {
    fake.next({ kind: 'huge', bytes: 3 * 1024 * 1024 });
    const res = await upstream(fake.url).send(call());
    // Let the provider's bytes pile up (the socket is paused past a bound), then read slowly.
    await new Promise((r) => setTimeout(r, 100));
    const chunks: Buffer[] = [];
    for await (const chunk of res.body) {
      chunks.push(Buffer.from(chunk));
      if (chunks.length % 8 === 0) await new Promise((r) => setImmediate(r));
    }
    const body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    expect(body.choices[0].message.content).toBe('lorem '.repeat(Math.ceil((3 * 1024 * 1024) / 6)));
  });

  it('a client that leaves during a failover call aborts that call, not only the first', async () => {
    const second = await startFakeUpstream({ name: 'second' });
    try {
      fake.next({ kind: 'error', status: 500 });
      second.next({ kind: 'hang' });
      const routes = [
        { upstream: 'first', model: 'gpt-4o-mini' },
        { upstream: 'second', model: 'gpt-4o-mini' },
      ];
      const cfg = (baseUrl: string) => upstreamSchema.parse({ baseUrl, connections: 2 });
      const u = new UndiciUpstream({ first: cfg(fake.url), second: cfg(second.url) }, {});
      opened.push(u);
      const cancellation = new Cancellation();
      const pending = forward(u, { routes } as Parameters<typeof forward>[1], {
        path: '/chat/completions',
        body: CHAT,
        requestId: 'req_failover',
        cancellation,
      });
      await vi.waitFor(() => expect(second.requests).toHaveLength(1), { timeout: 5_000, interval: 10 });
      cancellation.abort();
      expect(((await pending.catch((e: unknown) => e)) as Error).name).toBe('AbortError');
      await vi.waitFor(() => expect(second.requests[0]!.state).toBe('aborted'), { timeout: 5_000, interval: 10 });
    } finally {
      await second.close();
    }
  });

  it('refuses an upstream name it was not configured with', async () => {
    await expect(upstream(fake.url).send(call({ upstream: 'nope' }))).rejects.toThrow('Unknown upstream "nope"');
  });
});

describe('demo upstream with the official openai client', () => {
  let demo: Awaited<ReturnType<typeof startDemoUpstream>>;
  let client: OpenAI;

  beforeAll(async () => {
    demo = await startDemoUpstream();
    client = new OpenAI({ apiKey: 'demo', baseURL: demo.url, maxRetries: 0 });
  });
  afterAll(async () => {
    await demo.close();
  });

  it('listens on 127.0.0.1 with a /v1 base URL', () => {
    expect(demo.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/v1$/);
  });

  it('answers chat completions with a labelled reply and word-count usage', async () => {
    const res = await client.chat.completions.create({
      model: 'any-model',
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: [{ type: 'text', text: 'tell me a story' }] },
      ],
    });
    expect(res.id).toMatch(/^chatcmpl-/);
    expect(res.object).toBe('chat.completion');
    expect(res.model).toBe('any-model');
    expect(res.choices[0]!.message.content).toBe(
      "This is Guildgate's demo upstream, not a real model. You said 6 words.",
    );
    expect(res.choices[0]!.finish_reason).toBe('stop');
    expect(res.usage).toEqual({ prompt_tokens: 6, completion_tokens: 13, total_tokens: 19 });
  });

  it('streams the same reply word by word with usage at the end', async () => {
    const stream = await client.chat.completions.create({
      model: 'any-model',
      messages: [{ role: 'user', content: 'hi there' }],
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    const content = chunks.filter((c) => c.choices.length > 0);
    expect(content.length).toBe(13);
    expect(content.map((c) => c.choices[0]!.delta.content).join('')).toBe(
      "This is Guildgate's demo upstream, not a real model. You said 2 words.",
    );
    expect(content[0]!.choices[0]!.delta.role).toBe('assistant');
    expect(content.at(-1)!.choices[0]!.finish_reason).toBe('stop');
    expect(chunks.at(-1)!.usage).toEqual({ prompt_tokens: 2, completion_tokens: 13, total_tokens: 15 });
  });

  it('truncates to max_tokens with finish_reason length', async () => {
    const res = await client.chat.completions.create({
      model: 'any-model',
      messages: [{ role: 'user', content: 'hi' }],
      max_completion_tokens: 3,
    });
    expect(res.choices[0]!.message.content).toBe("This is Guildgate's");
    expect(res.choices[0]!.finish_reason).toBe('length');
    expect(res.usage!.completion_tokens).toBe(3);
  });

  it('answers legacy completions', async () => {
    const res = await client.completions.create({ model: 'any-model', prompt: 'say something nice' });
    expect(res.object).toBe('text_completion');
    expect(res.id).toMatch(/^cmpl-/);
    expect(res.choices[0]!.text).toContain('You said 3 words');
    expect(res.usage).toEqual({ prompt_tokens: 3, completion_tokens: 13, total_tokens: 16 });
  });

  it('answers embeddings deterministically, base64 (client default) and float', async () => {
    const a = await client.embeddings.create({ model: 'embed', input: ['alpha beta', 'gamma'] });
    expect(a.object).toBe('list');
    expect(a.data.map((d) => d.index)).toEqual([0, 1]);
    expect(a.data[0]!.embedding).toHaveLength(8);
    expect(a.data[0]!.embedding.every((x) => x >= -1 && x <= 1)).toBe(true);
    expect(a.data[0]!.embedding).not.toEqual(a.data[1]!.embedding);
    expect(a.usage).toEqual({ prompt_tokens: 3, total_tokens: 3 });
    const b = await client.embeddings.create({ model: 'embed', input: 'alpha beta', encoding_format: 'float' });
    expect(b.data[0]!.embedding).toEqual(a.data[0]!.embedding);
  });

  it('lists models', async () => {
    const ids = [];
    for await (const model of client.models.list()) ids.push(model.id);
    expect(ids).toEqual(['guildgate-demo', 'guildgate-demo-embedding']);
  });

  it('answers unknown paths with 404 and bad JSON with 400, OpenAI-shaped', async () => {
    const missing = await fetch(`${demo.url}/nope`, { method: 'POST', body: '{}' });
    expect(missing.status).toBe(404);
    expect(await missing.json()).toEqual({
      error: { message: 'Invalid URL (POST /v1/nope)', type: 'invalid_request_error', param: null, code: null },
    });
    const bad = await fetch(`${demo.url}/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"model":',
    });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: unknown }).error).toMatchObject({
      type: 'invalid_request_error',
      param: null,
    });
    await expect(client.chat.completions.create({ model: 'm' } as never)).rejects.toMatchObject({
      status: 400,
      param: 'messages',
    });
  });
});
