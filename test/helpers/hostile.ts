// Tools for the hostile-input property suite: a raw HTTP/1.1 client on node:net sockets (to send
// bytes no HTTP library would), a small response parser, fast-check arbitraries for hostile
// strings, JSON and request framing, and the invariants every /v1 answer must keep.
import { connect, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import fc from 'fast-check';
import { expect } from 'vitest';
import { budgetSubject } from '../../src/app/admission.js';
import type { UsageRecord } from '../../src/domain/types.js';
import type { TestRelay } from './relay.js';

/** Runs per property: GG_PROPERTY_RUNS overrides the default (scaled per property by `factor`). */
export function runs(defaultRuns: number): number {
  const env = Number(process.env.GG_PROPERTY_RUNS);
  return Number.isSafeInteger(env) && env > 0 ? env : defaultRuns;
}

/** A test timeout for a property of `defaultRuns` runs (or the GG_PROPERTY_RUNS override) at about `msPerRun`. */
export function timeoutFor(defaultRuns: number, msPerRun: number): number {
  return 30_000 + runs(defaultRuns) * msPerRun;
}

/** fast-check parameters shared by the suite: bounded runs; the seed is printed on failure. */
export function params(defaultRuns: number): fc.Parameters<unknown> {
  return { numRuns: runs(defaultRuns), endOnFailure: true };
}

// ---------------------------------------------------------------------------------------------
// Raw HTTP client

export interface RawResponse {
  status: number;
  /** Lower-cased names; repeated headers joined with ', '. */
  headers: Record<string, string>;
  body: Buffer;
}

export interface RawExchange {
  /** Complete responses, in order. */
  responses: RawResponse[];
  /** The server ended or reset the connection before the client gave up on it. */
  closedByServer: boolean;
  /** Everything the server sent. */
  raw: Buffer;
}

/** A piece of what the client sends: bytes, or a pause between writes (slow clients). */
export type Piece = string | Buffer | { pauseMs: number };

const HEAD_END = Buffer.from('\r\n\r\n');

/** Parses one response at the start of `buf`; null while it is incomplete (`ended`: no more bytes come). */
export function parseResponse(
  buf: Buffer,
  ended: boolean,
  head = false,
): { response: RawResponse; size: number } | null {
  const headEnd = buf.indexOf(HEAD_END);
  if (headEnd < 0) return null;
  const lines = buf.subarray(0, headEnd).toString('latin1').split('\r\n');
  const status = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '');
  if (!status) throw new Error(`not an HTTP response: ${JSON.stringify(lines[0])}`);
  const headers: Record<string, string> = {};
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
  }
  const code = Number(status[1]);
  let at = headEnd + 4;
  if (head || code < 200 || code === 204 || code === 304)
    return { response: { status: code, headers, body: Buffer.alloc(0) }, size: at };
  if (/chunked/i.test(headers['transfer-encoding'] ?? '')) {
    const parts: Buffer[] = [];
    for (;;) {
      const lineEnd = buf.indexOf('\r\n', at);
      if (lineEnd < 0) return null;
      const size = Number.parseInt(buf.subarray(at, lineEnd).toString('latin1'), 16);
      if (size === 0) {
        const end = buf.indexOf(HEAD_END, lineEnd - 2);
        if (end < 0) return null;
        return { response: { status: code, headers, body: Buffer.concat(parts) }, size: end + 4 };
      }
      if (buf.length < lineEnd + 2 + size + 2) return null;
      parts.push(buf.subarray(lineEnd + 2, lineEnd + 2 + size));
      at = lineEnd + 2 + size + 2;
    }
  }
  const length = headers['content-length'];
  if (length !== undefined) {
    const n = Number(length);
    if (buf.length < at + n) return null;
    return { response: { status: code, headers, body: buf.subarray(at, at + n) }, size: at + n };
  }
  // Delimited by the end of the connection.
  return ended ? { response: { status: code, headers, body: buf.subarray(at) }, size: buf.length } : null;
}

function parseAll(buf: Buffer, ended: boolean, head = false): RawResponse[] {
  const out: RawResponse[] = [];
  let rest = buf;
  for (;;) {
    const r = parseResponse(rest, ended, head && out.length === 0);
    if (!r) return out;
    out.push(r.response);
    rest = rest.subarray(r.size);
  }
}

/**
 * Sends `pieces` on a fresh connection and collects what comes back. Gives up on the connection
 * once `expect` responses are complete and nothing more arrived for `settleMs` (to catch a
 * smuggled extra response), or after `timeoutMs`.
 */
export async function rawExchange(
  port: number,
  pieces: Piece[],
  opts: { expect?: number; settleMs?: number; timeoutMs?: number; head?: boolean } = {},
): Promise<RawExchange> {
  const want = opts.expect ?? 1;
  const settleMs = opts.settleMs ?? 30;
  const socket: Socket = connect({ port, host: '127.0.0.1', noDelay: true });
  const chunks: Buffer[] = [];
  let closedByServer = false;
  let lastData = Date.now();
  let writing = true;
  const closed = new Promise<void>((resolve) => {
    socket.on('data', (d: Buffer) => {
      chunks.push(d);
      lastData = Date.now();
    });
    socket.on('end', () => {
      closedByServer = true;
      resolve();
    });
    socket.on('close', () => resolve());
    socket.on('error', () => {
      // A reset from the server: it closed the connection.
      closedByServer = true;
      resolve();
    });
  });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  void (async () => {
    for (const p of pieces) {
      if (socket.destroyed) break;
      if (typeof p === 'object' && !Buffer.isBuffer(p)) await sleep(p.pauseMs);
      else socket.write(p);
    }
    writing = false;
  })();
  const deadline = Date.now() + (opts.timeoutMs ?? 5_000);
  let done = false;
  void closed.then(() => {
    done = true;
  });
  while (!done && Date.now() < deadline) {
    await Promise.race([closed, sleep(5)]);
    if (done) break;
    const complete = parseAll(Buffer.concat(chunks), false, opts.head).length >= want;
    if (complete && !writing && Date.now() - lastData >= settleMs) break;
  }
  socket.destroy();
  const raw = Buffer.concat(chunks);
  return { responses: parseAll(raw, closedByServer, opts.head), closedByServer, raw };
}

/** One well-formed request as raw bytes. */
export function httpRequest(
  method: string,
  path: string,
  headers: Record<string, string>,
  body?: string | Buffer,
): Buffer {
  const b = body === undefined ? undefined : Buffer.isBuffer(body) ? body : Buffer.from(body);
  const lines = [`${method} ${path} HTTP/1.1`, 'Host: 127.0.0.1'];
  for (const [k, v] of Object.entries(headers)) lines.push(`${k}: ${v}`);
  if (b && !Object.keys(headers).some((k) => /^(content-length|transfer-encoding)$/i.test(k))) {
    lines.push(`Content-Length: ${b.length}`);
  }
  return Buffer.concat([Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1'), b ?? Buffer.alloc(0)]);
}

// ---------------------------------------------------------------------------------------------
// Arbitraries

/** Strings that mean something to a database, a shell, a path resolver or a JS object. */
export const OPERATOR_STRINGS = [
  '{"$gt":""}',
  '{"$ne":null}',
  '$where',
  '$regex',
  "' OR '1'='1",
  "'; DROP TABLE keys; --",
  '" OR ""="',
  '1; SELECT * FROM usage',
  '../../../../etc/passwd',
  '..\\..\\windows\\win.ini',
  '%2e%2e%2f%2e%2e%2f',
  '/v1/../healthz',
  'a\u0000b',
  '\u0000',
  '__proto__',
  'constructor',
  'prototype',
  'hasOwnProperty',
  // biome-ignore lint/suspicious/noTemplateCurlyInString: a log4shell-style string, meant literally
  '${jndi:ldap://x}',
  '{{7*7}}',
  '<script>alert(1)</script>',
  '\u202eevil',
  '\ud800',
  'gpt-4o-mini\u0000',
  ' gpt-4o-mini',
  'GPT-4O-MINI',
  '*',
  '%',
  '',
];

/** A hostile string: a known operator-like one, or any Unicode (lone surrogates included). */
export const hostileString: fc.Arbitrary<string> = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...OPERATOR_STRINGS) },
  { weight: 2, arbitrary: fc.string({ unit: 'binary', maxLength: 40 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'grapheme', maxLength: 40 }) },
  {
    weight: 1,
    arbitrary: fc.string({ unit: fc.constantFrom('{', '[', '"', '\\', '$', '\u0000', '/', '.'), maxLength: 30 }),
  },
);

/** Operator objects as a NoSQL injection would send them in place of a string. */
export const operatorObject: fc.Arbitrary<Record<string, unknown>> = fc.oneof(
  fc.constantFrom<Record<string, unknown>>(
    { $gt: '' },
    { $ne: null },
    { $where: '1' },
    { $regex: '.*' },
    // Parsed, so `__proto__` is an own key (as it is in a request body), not the prototype.
    JSON.parse('{"__proto__":{"admin":true}}'),
  ),
  fc.dictionary(fc.constantFrom('$gt', '$ne', '$in', '$or', '__proto__', 'constructor'), fc.jsonValue({ maxDepth: 2 })),
);

/** Any JSON value, hostile strings and operator objects favoured. */
export const hostileValue: fc.Arbitrary<unknown> = fc.oneof(
  hostileString,
  operatorObject,
  fc.jsonValue({ maxDepth: 3 }),
  fc.constantFrom(null, true, false, 0, -1, 1.5, 1e308, -1e308, 2 ** 53 + 1, [], {}, [null], ['']),
);

export type Endpoint = 'chat' | 'completions' | 'embeddings';
export const ENDPOINT_PATH: Record<Endpoint, string> = {
  chat: '/v1/chat/completions',
  completions: '/v1/completions',
  embeddings: '/v1/embeddings',
};

/** A body that the relay accepts, before one field is spoiled. */
export function validBody(endpoint: Endpoint): Record<string, unknown> {
  if (endpoint === 'chat') return { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello there' }] };
  if (endpoint === 'completions') return { model: 'gpt-4o-mini', prompt: 'hello there' };
  return { model: 'text-embedding-3-small', input: 'hello there' };
}

const FIELDS: Record<Endpoint, string[]> = {
  chat: [
    'model',
    'messages',
    'stream',
    'stream_options',
    'max_tokens',
    'max_completion_tokens',
    'n',
    'temperature',
    'tools',
    'user',
  ],
  completions: ['model', 'prompt', 'stream', 'stream_options', 'max_tokens', 'n', 'best_of', 'suffix', 'user'],
  embeddings: ['model', 'input', 'dimensions', 'encoding_format', 'user'],
};

/** A valid body with one to three fields (or nested message fields) set to hostile values. */
export function spoiledBody(endpoint: Endpoint): fc.Arbitrary<Record<string, unknown>> {
  const field = fc.constantFrom(...FIELDS[endpoint]);
  const edit = fc.tuple(field, hostileValue, fc.boolean());
  const nested = fc.tuple(fc.constantFrom('role', 'content', 'name', 'tool_calls', 'tool_call_id'), hostileValue);
  return fc
    .record({ edits: fc.array(edit, { minLength: 1, maxLength: 3 }), msg: fc.option(nested) })
    .map(({ edits, msg }) => {
      const body = validBody(endpoint);
      for (const [name, value, remove] of edits) {
        if (remove && name !== 'model') delete body[name];
        else body[name] = value;
      }
      if (msg && endpoint === 'chat' && Array.isArray(body.messages) && typeof body.messages[0] === 'object') {
        body.messages = [{ ...(body.messages[0] as object), [msg[0]]: msg[1] }];
      }
      return body;
    });
}

/** Nesting `depth` levels of arrays and objects, in the body's content or an extra field. */
export const deepJson: fc.Arbitrary<string> = fc
  .record({
    depth: fc.integer({ min: 100, max: 20_000 }),
    opener: fc.constantFrom('[', '{"a":', '[{"b":'),
    where: fc.constantFrom('content', 'extra', 'whole'),
    closed: fc.boolean(),
  })
  .map(({ depth, opener, where, closed }) => {
    const close = opener === '[' ? ']' : opener === '{"a":' ? '}' : '}]';
    const inner = `${opener.repeat(depth)}1${closed ? close.repeat(depth) : ''}`;
    if (where === 'whole') return inner;
    if (where === 'content') return `{"model":"gpt-4o-mini","messages":[{"role":"user","content":${inner}}]}`;
    return `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"extra":${inner}}`;
  });

/** Text that is not valid JSON (or is JSON of the wrong kind): cut, spliced, or noise. */
export function malformedJson(endpoint: Endpoint): fc.Arbitrary<string> {
  const valid = JSON.stringify(validBody(endpoint));
  return fc.oneof(
    fc.integer({ min: 0, max: valid.length - 1 }).map((n) => valid.slice(0, n)),
    fc
      .tuple(fc.integer({ min: 0, max: valid.length }), fc.string({ maxLength: 8 }))
      .map(([at, s]) => valid.slice(0, at) + s + valid.slice(at)),
    fc.constantFrom(
      '',
      ' ',
      'null',
      'true',
      '0',
      '"str"',
      '[]',
      '[{}]',
      'NaN',
      'undefined',
      '{"a":1,}',
      "{'a':1}",
      '{"model":"gpt-4o-mini"}{}',
      '\ufeff{}',
      '{"model":"a","model":{"$gt":""}}',
    ),
    fc.string({ unit: 'binary', maxLength: 64 }),
    fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v) ?? 'null'),
  );
}

/** Bytes that are not valid UTF-8 placed inside JSON strings or around them. */
export const invalidUtf8Body: fc.Arbitrary<Buffer> = fc
  .tuple(
    fc.constantFrom(
      [0xff],
      [0xc0, 0xaf],
      [0xed, 0xa0, 0x80],
      [0xf4, 0x90, 0x80, 0x80],
      [0xe2, 0x82],
      [0x80],
      [0xfe, 0xfe, 0xff],
      [0xef, 0xbb, 0xbf],
    ),
    fc.constantFrom('model', 'content', 'outside'),
  )
  .map(([bytes, where]) => {
    const bad = Buffer.from(bytes);
    const [a, b] =
      where === 'model'
        ? ['{"model":"gpt-4o', '-mini","messages":[{"role":"user","content":"hi"}]}']
        : where === 'content'
          ? ['{"model":"gpt-4o-mini","messages":[{"role":"user","content":"h', 'i"}]}']
          : ['', '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}'];
    return Buffer.concat([Buffer.from(a), bad, Buffer.from(b)]);
  });

/** Authorization header values that are not a valid key. */
export const badAuthorization: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom(
    '',
    'Bearer',
    'Bearer ',
    'Basic dXNlcjpwYXNz',
    'bearer gg_',
    'Bearer gg_1111111111111111111111111111111111',
    'Bearer {"$gt":""}',
    "Bearer ' OR 1=1 --",
    'Bearer ../../etc/passwd',
    'Bearer gg_ gg_',
    'Token gg_abc',
  ),
  fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 300 }).map((s) => `Bearer ${s}`),
  fc.integer({ min: 129, max: 8_000 }).map((n) => `Bearer gg_${'A'.repeat(n)}`),
  fc
    .string({
      unit: fc.constantFrom(...'123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz'),
      minLength: 20,
      maxLength: 60,
    })
    .map((s) => `Bearer gg_${s}`),
);

// ---------------------------------------------------------------------------------------------
// Invariants

/** An OpenAI-shaped error body: `{error:{message,type,param,code}}` with the right types. */
export function expectOpenAIError(status: number, text: string): void {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw new Error(`HTTP ${status} with a body that is not JSON: ${JSON.stringify(text.slice(0, 200))}`);
  }
  const err = (body as { error?: Record<string, unknown> }).error;
  expect(err, `HTTP ${status} body: ${text.slice(0, 300)}`).toBeTypeOf('object');
  expect(typeof err!.message).toBe('string');
  expect(typeof err!.type).toBe('string');
  expect(err!.param === null || typeof err!.param === 'string').toBe(true);
  expect(err!.code === null || typeof err!.code === 'string').toBe(true);
  expect(Object.keys(err!).sort()).toEqual(['code', 'message', 'param', 'type']);
}

/** Budget tokens used today (reserved + charged) by a member. */
export async function budgetUsed(t: TestRelay, discordId: string): Promise<number> {
  const { limits } = t.relay.services;
  return limits.budget.used(budgetSubject(discordId), limits.calendar.at(new Date()).day);
}

/** Usage records of a member after flushing the write buffer. */
export async function usageOf(t: TestRelay, discordId: string): Promise<UsageRecord[]> {
  await t.relay.services.usage.flush();
  return t.relay.services.store.listUsage(discordId, 100_000);
}

/** A normal chat completion over fetch; throws unless it succeeds. */
export async function normalRequest(t: TestRelay, key: string): Promise<void> {
  const res = await fetch(`${t.baseURL}/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'still there?' }] }),
  });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`a normal request got ${res.status}: ${text.slice(0, 300)}`);
  expect((JSON.parse(text) as { choices: unknown[] }).choices.length).toBeGreaterThan(0);
}

export function portOf(t: TestRelay): number {
  return Number(new URL(t.url).port);
}
