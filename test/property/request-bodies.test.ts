// Properties over what an authenticated client can put in a /v1 request body: spoiled fields,
// malformed and deeply nested JSON, invalid UTF-8, odd content types and content encodings. The
// relay answers each with a 2xx (relayed) or an OpenAI-shaped 4xx, stores and spends nothing for a
// refusal, and keeps serving.
import { brotliCompressSync, deflateSync, gzipSync } from 'node:zlib';
import fc from 'fast-check';
import { afterAll, beforeAll, expect, it } from 'vitest';
import {
  deepJson,
  ENDPOINT_PATH,
  type Endpoint,
  hostileString,
  httpRequest,
  invalidUtf8Body,
  malformedJson,
  operatorObject,
  params,
  rawExchange,
  spoiledBody,
  timeoutFor,
  validBody,
} from '../helpers/hostile.js';
import { checkHostile, type Harness, startHarness } from './harness.js';

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h?.stop();
});

const endpoint = fc.constantFrom<Endpoint>('chat', 'completions', 'embeddings');

const body = (e: Endpoint): fc.Arbitrary<Buffer> =>
  fc.oneof(
    { weight: 4, arbitrary: spoiledBody(e).map((b) => Buffer.from(JSON.stringify(b))) },
    { weight: 3, arbitrary: malformedJson(e).map((s) => Buffer.from(s)) },
    { weight: 1, arbitrary: deepJson.map((s) => Buffer.from(s)) },
    { weight: 1, arbitrary: invalidUtf8Body },
  );

const contentType = fc.constantFrom(
  'application/json',
  'application/json; charset=utf-8',
  'application/json; charset=utf-16',
  'text/plain',
  'application/x-www-form-urlencoded',
  'multipart/form-data; boundary=----x',
  'application/xml',
  '*/*',
  '',
  undefined,
);

type Encoding = 'none' | 'gzip' | 'deflate' | 'br' | 'gzip-mismatch' | 'unknown' | 'stacked' | 'identity';
const encoding = fc.constantFrom<Encoding>(
  'none',
  'gzip',
  'deflate',
  'br',
  'gzip-mismatch',
  'unknown',
  'stacked',
  'identity',
);

/** The body and Content-Encoding header to send for `enc` (a mismatch claims gzip but sends plain). */
function encode(b: Buffer, enc: Encoding): { body: Buffer; header?: string } {
  switch (enc) {
    case 'none':
      return { body: b };
    case 'gzip':
      return { body: gzipSync(b), header: 'gzip' };
    case 'deflate':
      return { body: deflateSync(b), header: 'deflate' };
    case 'br':
      return { body: brotliCompressSync(b), header: 'br' };
    case 'gzip-mismatch':
      return { body: b, header: 'gzip' };
    case 'unknown':
      return { body: b, header: 'x-squash' };
    case 'stacked':
      return { body: gzipSync(gzipSync(b)), header: 'gzip, gzip' };
    case 'identity':
      return { body: b, header: 'identity' };
  }
}

it(
  'any body, content type and content encoding: a relayed answer or an OpenAI-shaped 4xx, never 5xx',
  async () => {
    const arb = endpoint.chain((e) => fc.record({ e: fc.constant(e), body: body(e), contentType, encoding }));
    await fc.assert(
      fc.asyncProperty(arb, async ({ e, body: raw, contentType: ct, encoding: enc }) => {
        const { body: sent, header } = encode(raw, enc);
        const headers: Record<string, string> = { Authorization: `Bearer ${h.key}` };
        if (ct !== undefined) headers['Content-Type'] = ct;
        if (header) headers['Content-Encoding'] = header;
        const r = await checkHostile(
          h,
          () => rawExchange(h.port, [httpRequest('POST', ENDPOINT_PATH[e], headers, sent)]),
          {
            v1: true,
          },
        );
        // A compressed body is never read as if it were plain JSON.
        if (enc !== 'none' && enc !== 'identity') expect(r?.status).not.toBe(200);
      }),
      params(120),
    );
  },
  timeoutFor(120, 200),
);

it(
  'a body that is valid apart from its model name (operator strings, NUL bytes, traversal) is refused as a 4xx',
  async () => {
    const model = fc.oneof(hostileString, operatorObject, fc.constant('gpt-4o-mini/../../gpt-4o-mini'));
    await fc.assert(
      fc.asyncProperty(endpoint, model, async (e, m) => {
        const b = { ...validBody(e), model: m };
        const r = await checkHostile(
          h,
          () =>
            rawExchange(h.port, [
              httpRequest(
                'POST',
                ENDPOINT_PATH[e],
                { Authorization: `Bearer ${h.key}`, 'Content-Type': 'application/json' },
                JSON.stringify(b),
              ),
            ]),
          { v1: true },
        );
        // Only the configured names are models; nothing else reaches the upstream.
        expect(r?.status).toBeGreaterThanOrEqual(400);
      }),
      params(80),
    );
  },
  timeoutFor(80, 200),
);
