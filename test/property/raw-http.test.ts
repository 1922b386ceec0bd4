// Properties over raw HTTP/1.1 on sockets: every method and path of the API surface with hostile
// ids, keys and headers; request-smuggling framings; oversized headers; slow clients. Node's parser
// may close an unparseable request itself with a bare 400/431; everything the app answers keeps the
// OpenAI shape, nothing is a 5xx, and the relay keeps serving.
import fc from 'fast-check';
import { afterAll, beforeAll, expect, it } from 'vitest';
import {
  badAuthorization,
  hostileString,
  httpRequest,
  normalRequest,
  type Piece,
  params,
  type RawExchange,
  rawExchange,
  timeoutFor,
} from '../helpers/hostile.js';
import { checkHostile, type Harness, isBare, startHarness } from './harness.js';

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h?.stop();
});

/** Every byte of `s` (as UTF-8) percent-encoded when not unreserved: a path segment any parser accepts. */
function pctEncode(s: string): string {
  let out = '';
  for (const b of Buffer.from(s)) {
    const c = String.fromCharCode(b);
    out += /[A-Za-z0-9\-._~]/.test(c) ? c : `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/** A path segment: percent-encoded hostile text, malformed percent-encoding, or raw bytes. */
const segment = fc.oneof(
  { weight: 4, arbitrary: hostileString.map(pctEncode) },
  { weight: 1, arbitrary: fc.constantFrom('%', '%ZZ', '%C0%AF', '%00', '%2F..%2F', '..', '.', '%u0000', '%E0%80') },
  // Unencoded: spaces and control bytes are not allowed in a request target.
  { weight: 1, arbitrary: fc.string({ unit: 'binary-ascii', maxLength: 12 }) },
);

const path = fc.oneof(
  fc.constantFrom(
    '/v1/chat/completions',
    '/v1/completions',
    '/v1/embeddings',
    '/v1/models',
    '/healthz',
    '/readyz',
    '/v1',
    '/v1/',
    '//v1/models',
    '/V1/models',
    '/v1/models/',
    '*',
  ),
  segment.map((s) => `/v1/models/${s}`),
  fc.tuple(segment, segment).map(([a, b]) => `/v1/models/${a}/${b}`),
  segment.map((s) => `/v1/${s}`),
  segment.map((s) => `/${s}`),
  fc
    .tuple(fc.constantFrom('/v1/models', '/healthz', '/v1/chat/completions'), segment)
    .map(([p, q]) => `${p}?${q}=${q}`),
);

const method = fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD', 'TRACE', 'CONNECT', 'FOO');

/** The Authorization header: the member's key, a bad one, or none. */
const auth = fc.oneof(fc.constant<'valid'>('valid'), badAuthorization, fc.constant(undefined));

const smallBody = fc.constantFrom(
  undefined,
  '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}',
  '{"model":"text-embedding-3-small","input":"hi"}',
  '{"model":"gpt-4o-mini","prompt":"hi"}',
  '{}',
  'not json',
);

it(
  'any method, path, key and Origin on the API surface: never a 5xx, OpenAI-shaped errors, still serving',
  async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({ method, path, auth, body: smallBody, origin: fc.option(hostileString.map(pctEncode)) }),
        async ({ method: m, path: p, auth: a, body, origin }) => {
          const headers: Record<string, string> = { 'Content-Type': 'application/json' };
          if (a !== undefined) headers.Authorization = a === 'valid' ? `Bearer ${h.key}` : a;
          if (origin !== null) {
            headers.Origin = `https://${origin}`;
            headers['Access-Control-Request-Headers'] = origin;
          }
          const bytes = httpRequest(m, p, headers, m === 'GET' || m === 'HEAD' ? undefined : body);
          const r = await checkHostile(h, () => rawExchange(h.port, [bytes], { head: m === 'HEAD' }), {
            v1: true,
            head: m === 'HEAD',
          });
          // A bad key learns only that it is bad; a CORS preflight (no credentials by design) gets its 204.
          const preflight = m === 'OPTIONS' && origin !== null;
          if (r && !isBare(r) && a !== 'valid' && p.startsWith('/v1') && !preflight) {
            expect([401, 400, 404]).toContain(r.status);
          }
        },
      ),
      params(150),
    );
  },
  timeoutFor(150, 200),
);

it(
  'a bad or missing API key of any length or shape: a 401 in OpenAI shape (or a bare 400 for unparseable headers)',
  async () => {
    const p = fc.constantFrom(
      '/v1/chat/completions',
      '/v1/embeddings',
      '/v1/models',
      '/v1/models/gpt-4o-mini',
      '/v1/nope',
    );
    await fc.assert(
      fc.asyncProperty(badAuthorization, p, async (a, where) => {
        const r = await checkHostile(
          h,
          () =>
            rawExchange(h.port, [
              httpRequest(
                where === '/v1/models' || where.startsWith('/v1/models/') ? 'GET' : 'POST',
                where,
                { Authorization: a, 'Content-Type': 'application/json' },
                '{}',
              ),
            ]),
          { v1: true },
        );
        if (r && !isBare(r)) {
          expect(r.status).toBe(401);
          expect(JSON.parse(r.body.toString()).error.code).toBe('invalid_api_key');
        }
      }),
      params(100),
    );
  },
  timeoutFor(100, 200),
);

// --- Request smuggling ------------------------------------------------------------------------

const JSON_BODY = '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}';

/** A request whose framing two parsers could read differently; what follows it must never run. */
interface Framing {
  name: string;
  /** Head lines after the request line and Host (CRLF added), and the body bytes. */
  build(smuggled: string): { headers: string[]; body: string; eol?: string };
}

const chunked = (s: string) => `${s.length.toString(16)}\r\n${s}\r\n0\r\n\r\n`;

const AMBIGUOUS: Framing[] = [
  {
    name: 'CL.TE',
    build: (x) => ({
      headers: [`Content-Length: ${chunked(JSON_BODY).length + x.length}`, 'Transfer-Encoding: chunked'],
      body: chunked(JSON_BODY) + x,
    }),
  },
  {
    name: 'TE.CL',
    build: (x) => ({
      headers: ['Transfer-Encoding: chunked', `Content-Length: ${JSON_BODY.length}`],
      body: chunked(JSON_BODY) + x,
    }),
  },
  {
    name: 'duplicate Content-Length, different values',
    build: (x) => ({
      headers: [`Content-Length: ${JSON_BODY.length}`, `Content-Length: ${JSON_BODY.length + x.length}`],
      body: JSON_BODY + x,
    }),
  },
  {
    name: 'Content-Length list',
    build: (x) => ({
      headers: [`Content-Length: ${JSON_BODY.length}, ${JSON_BODY.length + x.length}`],
      body: JSON_BODY + x,
    }),
  },
  ...[
    'Transfer-Encoding: xchunked',
    'Transfer-Encoding: chunked, identity',
    'Transfer-Encoding: chunked\r\nTransfer-Encoding: x',
    'Transfer-Encoding : chunked',
    'Transfer-Encoding:\u000bchunked',
    'Transfer-Encoding: "chunked"',
    'Transfer-Encoding: chunk',
    'Transfer-Encoding: identity',
    'Transfer-Encoding:\r\n chunked',
  ].map(
    (te): Framing => ({
      name: `obfuscated TE (${JSON.stringify(te)}) with CL`,
      build: (x) => ({ headers: [te, `Content-Length: ${chunked(JSON_BODY).length}`], body: chunked(JSON_BODY) + x }),
    }),
  ),
  {
    name: 'Content-Length with a sign or hex',
    build: (x) => ({ headers: [`Content-Length: +${JSON_BODY.length}`], body: JSON_BODY + x }),
  },
  {
    name: 'chunk size with a sign',
    build: (x) => ({ headers: ['Transfer-Encoding: chunked'], body: `-${chunked(JSON_BODY)}${x}` }),
  },
  {
    name: 'chunk size overflowing 64 bits',
    build: (x) => ({
      headers: ['Transfer-Encoding: chunked'],
      body: `10000000000000000${JSON_BODY.length.toString(16)}\r\n${JSON_BODY}\r\n0\r\n\r\n${x}`,
    }),
  },
  {
    name: 'chunk data longer than its size',
    build: (x) => ({ headers: ['Transfer-Encoding: chunked'], body: `2\r\n${JSON_BODY}\r\n0\r\n\r\n${x}` }),
  },
  {
    name: 'bare LF ending the chunk size line',
    build: (x) => ({
      headers: ['Transfer-Encoding: chunked'],
      body: `${JSON_BODY.length.toString(16)}\n${JSON_BODY}\r\n0\r\n\r\n${x}`,
    }),
  },
  {
    name: 'bare LF line endings in the head, with CL and TE',
    build: (x) => ({
      headers: ['Transfer-Encoding: chunked', `Content-Length: ${JSON_BODY.length}`],
      body: chunked(JSON_BODY) + x,
      eol: '\n',
    }),
  },
  {
    name: 'bare CR inside a header value',
    build: (x) => ({
      headers: [`X-Note: a\rTransfer-Encoding: chunked`, `Content-Length: ${chunked(JSON_BODY).length}`],
      body: chunked(JSON_BODY) + x,
    }),
  },
];

it(
  'ambiguous framings (CL+TE, duplicate CL, obfuscated TE, malformed chunks, bare CR/LF) are refused and nothing smuggled runs',
  async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...AMBIGUOUS),
        fc.constantFrom('/v1/chat/completions', '/v1/completions', '/v1/embeddings'),
        fc.stringMatching(/^[a-z0-9]{12}$/),
        async (framing, target, nonce) => {
          const smuggled = `GET /v1/models/smuggled-${nonce} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${h.key}\r\n\r\n`;
          const { headers, body, eol = '\r\n' } = framing.build(smuggled);
          const head = [
            `POST ${target} HTTP/1.1`,
            'Host: 127.0.0.1',
            `Authorization: Bearer ${h.key}`,
            'Content-Type: application/json',
            ...headers,
          ];
          const bytes = Buffer.from(`${head.join(eol)}${eol}${eol}${body}`, 'latin1');
          let ex: RawExchange | undefined;
          const r = await checkHostile(
            h,
            async () => {
              ex = await rawExchange(h.port, [bytes], { expect: 2, settleMs: 30, timeoutMs: 1_500 });
              return ex;
            },
            { v1: true },
          );
          // Refused by the parser itself, and the connection closed: no second request is read from it.
          expect(r?.status, framing.name).toBe(400);
          expect(ex!.responses, framing.name).toHaveLength(1);
          expect(ex!.raw.toString('latin1')).not.toContain(nonce);
          expect(
            h.t.logs.some((l) => l.includes(nonce)),
            framing.name,
          ).toBe(false);
        },
      ),
      params(60),
    );
  },
  timeoutFor(60, 200),
);

it(
  'pipelined well-formed requests, chunked or not, each get their own answer',
  async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.boolean(), { minLength: 2, maxLength: 5 }), async (useChunked) => {
        const pieces: Piece[] = useChunked.map((c) => {
          const head = `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${h.key}\r\nContent-Type: application/json\r\n`;
          return c
            ? `${head}Transfer-Encoding: CHUNKED\r\n\r\n${chunked(JSON_BODY)}`
            : `${head}Content-Length: ${JSON_BODY.length}\r\n\r\n${JSON_BODY}`;
        });
        const ex = await rawExchange(h.port, [pieces.join('')], { expect: pieces.length, timeoutMs: 5_000 });
        expect(ex.responses.map((r) => r.status)).toEqual(useChunked.map(() => 200));
      }),
      params(15),
    );
  },
  timeoutFor(15, 200),
);

// --- Headers ----------------------------------------------------------------------------------

it(
  'oversized or malformed heads get a bare 400/431 and a closed connection; the relay keeps serving',
  async () => {
    // Built inside the property so a failure prints the recipe, not 100 kB of header lines.
    const head = fc.oneof(
      fc.record({ kind: fc.constant('one big header'), n: fc.integer({ min: 17 * 1024, max: 200 * 1024 }) }),
      fc.record({ kind: fc.constant('many headers'), n: fc.integer({ min: 700, max: 3_000 }) }),
      fc.record({ kind: fc.constant('big key'), n: fc.integer({ min: 17 * 1024, max: 64 * 1024 }) }),
      fc.record({
        kind: fc.constantFrom('NUL', 'space in name', 'empty name', 'control byte', 'no colon'),
        n: fc.constant(0),
      }),
    );
    const build = ({ kind, n }: { kind: string; n: number }): string[] => {
      switch (kind) {
        case 'one big header':
          return [`X-Big: ${'a'.repeat(n)}`];
        case 'many headers':
          return Array.from({ length: n }, (_, i) => `X-H${i}: ${'v'.repeat(20)}`);
        case 'big key':
          return [`Authorization: Bearer gg_${'A'.repeat(n)}`];
        case 'NUL':
          return ['X-Nul: a\u0000b'];
        case 'space in name':
          return ['Bad Header: x'];
        case 'empty name':
          return [': empty-name'];
        case 'control byte':
          return ['X-Ctl: \u0001'];
        default:
          return ['NoColon'];
      }
    };
    await fc.assert(
      fc.asyncProperty(head, fc.constantFrom('/v1/models', '/v1/chat/completions', '/healthz'), async (spec, where) => {
        const bytes = Buffer.from(`GET ${where} HTTP/1.1\r\nHost: x\r\n${build(spec).join('\r\n')}\r\n\r\n`, 'latin1');
        const r = await checkHostile(h, () => rawExchange(h.port, [bytes], { timeoutMs: 3_000 }), { v1: true });
        // Every one of these is over Node's 16 kB head limit or not HTTP: the parser refuses it.
        expect(r && isBare(r), `${spec.kind}: HTTP ${r?.status}`).toBe(true);
        expect([400, 431]).toContain(r?.status);
      }),
      params(30),
    );
  },
  timeoutFor(30, 200),
);

it('a request without Host, or with two, or in HTTP/1.0 or 0.9 or 2.0 shape, never gets a 5xx', async () => {
  const requests = [
    `GET /v1/models HTTP/1.1\r\nAuthorization: Bearer KEY\r\n\r\n`,
    `GET /v1/models HTTP/1.1\r\nHost: a\r\nHost: b\r\nAuthorization: Bearer KEY\r\n\r\n`,
    `GET /v1/models HTTP/1.0\r\nAuthorization: Bearer KEY\r\n\r\n`,
    `GET /v1/models\r\n\r\n`,
    `PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`,
    `GET /v1/models HTTP/9.9\r\nHost: x\r\n\r\n`,
    `GET http://evil.example/v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer KEY\r\n\r\n`,
    `\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n`,
    `GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer KEY\r\nAuthorization: Bearer nope\r\n\r\n`,
    `\u0016\u0003\u0001\u0002\u0000\u0001\u0000\u0001\u00fc\u0003\u0003`,
  ];
  for (const text of requests) {
    await checkHostile(h, () => rawExchange(h.port, [Buffer.from(text.replaceAll('KEY', h.key), 'latin1')]), {
      v1: true,
    });
  }
});

// --- Slow clients -----------------------------------------------------------------------------

it('slow clients (headers or body dribbled, or silent) get a 408 and a closed socket while others are served', async () => {
  const { server } = h.t.relay;
  const saved = { headersTimeout: server.headersTimeout, requestTimeout: server.requestTimeout };
  // The relay's limits (HTTP_LIMITS: 15 s, 60 s) shortened, so the test does not wait that long.
  server.headersTimeout = 1_000;
  server.requestTimeout = 2_000;
  const logsBefore = h.t.logs.length;
  try {
    const head = `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${h.key}\r\nContent-Type: application/json\r\nContent-Length: ${JSON_BODY.length}\r\n\r\n`;
    const dribble = (s: string): Piece[] => [...s].flatMap((c): Piece[] => [c, { pauseMs: 100 }]);
    const slow = [
      ...Array.from({ length: 6 }, () => rawExchange(h.port, dribble(head), { timeoutMs: 25_000 })),
      ...Array.from({ length: 6 }, () => rawExchange(h.port, [head, ...dribble(JSON_BODY)], { timeoutMs: 25_000 })),
      ...Array.from({ length: 6 }, () => rawExchange(h.port, [{ pauseMs: 20_000 }], { timeoutMs: 25_000 })),
    ];
    // Others are served while the slow sockets are held.
    for (let i = 0; i < 5; i++) await normalRequest(h.t, h.key);
    const results = await Promise.all(slow);
    for (const [i, ex] of results.entries()) {
      expect(ex.closedByServer, `slow client ${i}`).toBe(true);
      for (const r of ex.responses) expect(r.status, `slow client ${i}`).toBe(408);
    }
    await normalRequest(h.t, h.key);
    await h.t.relay.services.inflight.settled(Date.now() + 5_000);
    const errors = h.t.logs.slice(logsBefore).filter((l) => (JSON.parse(l) as { level: number }).level >= 50);
    expect(errors, errors.join('\n').slice(0, 1_000)).toEqual([]);
  } finally {
    Object.assign(server, saved);
  }
});
