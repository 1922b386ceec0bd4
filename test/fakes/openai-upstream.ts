// A faithful fake OpenAI-compatible provider for tests: real HTTP on a free port, the same response
// shapes as the demo upstream (shared builders), plus scripted faults (errors, hangs, resets,
// broken streams) and a record of every request it received.
//
// Token counts are deterministic: prompt_tokens = whitespace-separated words of all message
// contents / prompts / inputs (see `countWords`); completion_tokens = words of the reply.
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  answerOpenAI,
  openAIError,
  openAIHeaders,
  readBody,
  SSE_CONTENT_TYPE,
  writeJson,
} from '../../src/adapters/upstream/demo-upstream.js';

export type FakeBehavior =
  | { kind: 'ok'; text?: string; usage?: boolean }
  | { kind: 'error'; status: number; type?: string; code?: string; message?: string; headers?: Record<string, string> }
  /** Waits before sending headers, then answers ok. */
  | { kind: 'delay'; ms: number }
  /** Never sends headers. */
  | { kind: 'hang' }
  /** Sends headers and the first chunk (half the body for JSON), then stalls. */
  | { kind: 'hang-after-first-chunk' }
  /** Destroys the socket after `afterChunks` SSE frames (half the body for JSON). */
  | { kind: 'fail-mid-stream'; afterChunks: number }
  /** Destroys the socket before sending headers. */
  | { kind: 'reset' }
  /** 200 with invalid JSON, or an invalid SSE stream. */
  | { kind: 'garbage' }
  | { kind: 'slow-stream'; chunkDelayMs: number }
  // Hostile providers (for the property suite). Unlike the modes above they misbehave in the
  // ways real gateways and broken providers do, not only in the ways OpenAI itself fails.
  /** Exactly these bytes: any status, headers and body (garbage SSE, wrong framing of content). */
  | { kind: 'raw'; status: number; headers?: Record<string, string | string[]>; body: string | Buffer }
  /** A proxy's HTML error page (what nginx or a CDN sends in front of a broken provider). */
  | { kind: 'html'; status: number }
  /** 200 application/json whose body is not JSON. */
  | { kind: 'invalid-json' }
  /** The normal answer cut short, with a Content-Length that matches the cut (the HTTP is complete). */
  | { kind: 'truncated-json' }
  /** The normal answer, written one byte per socket write. */
  | { kind: 'bytewise' }
  /** The normal answer with `usage` replaced by this raw JSON text (it may be invalid, e.g. `NaN`). */
  | { kind: 'usage'; raw: string }
  /** The normal answer padded to about `bytes` (a long reply text, or one long SSE event). */
  | { kind: 'huge'; bytes: number }
  /** The normal answer under another content type. */
  | { kind: 'content-type'; contentType: string }
  /** The normal answer, with the socket destroyed after `bytes` bytes of body. */
  | { kind: 'reset-after-bytes'; bytes: number };

export interface RecordedRequest {
  method: string;
  /** Path with query, as received (e.g. `/v1/chat/completions`). */
  path: string;
  headers: IncomingHttpHeaders;
  /** Parsed JSON, the raw text when not JSON, undefined when empty. */
  body: unknown;
  /** Which TCP connection carried it (1, 2, ...): equal numbers mean a reused connection. */
  connection: number;
  /** `open` while the response is being written; `aborted` when the connection closed first. */
  state: 'open' | 'finished' | 'aborted';
}

export interface FakeUpstream {
  name: string;
  /** Base URL ending in `/v1`. */
  url: string;
  requests: RecordedRequest[];
  /** TCP connections accepted so far. */
  readonly connections: number;
  /** Queues a behavior for the next request (first in, first out). */
  next(behavior: FakeBehavior): void;
  /** Behavior when the queue is empty (initially `ok`). */
  setDefault(behavior: FakeBehavior): void;
  /** Clears the queue, the recorded requests and the default. */
  reset(): void;
  close(): Promise<void>;
}

const MODELS = ['gpt-4o-mini', 'text-embedding-3-small'];

const ERROR_DEFAULTS: Record<number, { type: string; code: string | null; message: string }> = {
  400: { type: 'invalid_request_error', code: null, message: 'Invalid request.' },
  401: { type: 'invalid_request_error', code: 'invalid_api_key', message: 'Incorrect API key provided.' },
  403: { type: 'invalid_request_error', code: 'unsupported_country_region_territory', message: 'Forbidden.' },
  404: { type: 'invalid_request_error', code: 'model_not_found', message: 'The model does not exist.' },
  429: { type: 'requests', code: 'rate_limit_exceeded', message: 'Rate limit reached for requests.' },
  500: { type: 'server_error', code: null, message: 'The server had an error while processing your request.' },
  503: { type: 'server_error', code: null, message: 'The engine is currently overloaded, please try again later.' },
};

const RATE_LIMIT_HEADERS = {
  'retry-after': '1',
  'x-ratelimit-limit-requests': '60',
  'x-ratelimit-remaining-requests': '0',
  'x-ratelimit-reset-requests': '1s',
};

function parseBody(raw: string): unknown {
  if (raw === '') return undefined;
  try {
    return JSON.parse(raw);
  } catch {
    return raw;
  }
}

function write(res: ServerResponse, chunk: string | Uint8Array): Promise<void> {
  return new Promise((resolve, reject) => res.write(chunk, (err) => (err ? reject(err) : resolve())));
}

type HostileBehavior = Extract<
  FakeBehavior,
  { kind: 'truncated-json' | 'bytewise' | 'usage' | 'huge' | 'content-type' | 'reset-after-bytes' }
>;
const HOSTILE_KINDS = new Set(['truncated-json', 'bytewise', 'usage', 'huge', 'content-type', 'reset-after-bytes']);
const isHostile = (b: FakeBehavior): b is HostileBehavior => HOSTILE_KINDS.has(b.kind);

/** Placeholder swapped for the raw usage text after serializing (so it may be invalid JSON). */
const USAGE_SLOT = '"__usage_slot__"';

/** The normal answer's body text, transformed as the hostile behavior says. */
function hostileBody(b: HostileBehavior, reply: ReturnType<typeof answerOpenAI>): string {
  if (reply.kind === 'json') {
    const body = reply.body as Record<string, unknown>;
    if (b.kind === 'usage' && 'usage' in body)
      return JSON.stringify({ ...body, usage: '__usage_slot__' }).replace(USAGE_SLOT, b.raw);
    if (b.kind === 'huge') {
      const choices = body.choices as Array<{ message?: { content: string }; text?: string }> | undefined;
      const first = choices?.[0];
      const pad = 'lorem '.repeat(Math.ceil(b.bytes / 6));
      if (first?.message) first.message.content = pad;
      else if (first) first.text = pad;
      else body.padding = pad;
    }
    return JSON.stringify(body);
  }
  let frames = reply.frames;
  if (b.kind === 'usage') {
    frames = frames.map((f) => (f.includes('"usage":{') ? f.replace(/"usage":\{[^}]*\}/, `"usage":${b.raw}`) : f));
  }
  if (b.kind === 'huge') {
    const first = frames[0] ?? '';
    frames = [
      first.replace(/"content":"/, `"content":"${'lorem '.repeat(Math.ceil(b.bytes / 6))}`),
      ...frames.slice(1),
    ];
  }
  return frames.join('');
}

async function sendHostile(
  req: IncomingMessage,
  res: ServerResponse,
  b: HostileBehavior,
  reply: ReturnType<typeof answerOpenAI>,
  headers: Record<string, string>,
): Promise<void> {
  let text = hostileBody(b, reply);
  if (b.kind === 'truncated-json') text = text.slice(0, Math.max(1, Math.floor(text.length / 2)));
  const status = reply.kind === 'json' ? reply.status : 200;
  const contentType = b.kind === 'content-type' ? b.contentType : headers['content-type']!;
  const bytes = Buffer.from(text);
  res.writeHead(status, {
    ...headers,
    'content-type': contentType,
    ...(reply.kind === 'json' ? { 'content-length': String(bytes.length) } : { 'cache-control': 'no-cache' }),
  });
  if (b.kind === 'bytewise') {
    req.socket.setNoDelay(true);
    for (let i = 0; i < bytes.length; i++) await write(res, bytes.subarray(i, i + 1));
    res.end();
    return;
  }
  if (b.kind === 'reset-after-bytes') {
    await write(res, bytes.subarray(0, Math.min(b.bytes, bytes.length)));
    req.socket.destroy();
    return;
  }
  res.end(bytes);
}

export async function startFakeUpstream(opts?: { name?: string; apiKey?: string }): Promise<FakeUpstream> {
  const name = opts?.name ?? 'fake';
  const requests: RecordedRequest[] = [];
  const queue: FakeBehavior[] = [];
  let fallback: FakeBehavior = { kind: 'ok' };
  let connections = 0;
  const connectionIds = new WeakMap<Socket, number>();

  const server = createServer((req, res) => {
    handle(req, res).catch(() => res.destroy());
  });
  server.on('connection', (socket: Socket) => connectionIds.set(socket, ++connections));

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const startedAt = Date.now();
    const rawBody = (await readBody(req, Number.POSITIVE_INFINITY)) ?? '';
    const record: RecordedRequest = {
      method: req.method ?? 'GET',
      path: req.url ?? '/',
      headers: req.headers,
      body: parseBody(rawBody),
      connection: connectionIds.get(req.socket) ?? 0,
      state: 'open',
    };
    requests.push(record);
    const gone = new AbortController();
    res.on('close', () => {
      record.state = res.writableFinished ? 'finished' : 'aborted';
      gone.abort();
    });

    if (opts?.apiKey !== undefined && req.headers.authorization !== `Bearer ${opts.apiKey}`) {
      const d = ERROR_DEFAULTS[401]!;
      const reply = openAIError(401, d.message, d.type, d.code);
      writeJson(res, reply.status, reply.body, openAIHeaders('application/json', startedAt));
      return;
    }

    const behavior = queue.shift() ?? fallback;
    const wantsStream = (record.body as { stream?: unknown } | undefined)?.stream === true;
    switch (behavior.kind) {
      case 'reset':
        req.socket.destroy();
        return;
      case 'hang':
        return;
      case 'error': {
        const d = ERROR_DEFAULTS[behavior.status] ?? ERROR_DEFAULTS[500]!;
        const reply = openAIError(
          behavior.status,
          behavior.message ?? d.message,
          behavior.type ?? d.type,
          behavior.code ?? d.code,
        );
        writeJson(res, reply.status, reply.body, {
          ...openAIHeaders('application/json', startedAt),
          ...(behavior.status === 429 ? RATE_LIMIT_HEADERS : {}),
          ...behavior.headers,
        });
        return;
      }
      case 'garbage':
        res.writeHead(200, openAIHeaders(wantsStream ? SSE_CONTENT_TYPE : 'application/json', startedAt));
        res.end(
          wantsStream
            ? 'data: {"id":"chatcmpl-garbage","choices":[{"delta":\n\nthis is not an SSE field line\n\ndata: [DO'
            : '{"id":"chatcmpl-garbage","object":"chat.completion","choices":[',
        );
        return;
      case 'delay':
        await sleep(behavior.ms, undefined, { signal: gone.signal });
        break;
      case 'raw':
        res.writeHead(behavior.status, behavior.headers ?? {});
        res.end(behavior.body);
        return;
      case 'html': {
        const page = `<html>\r\n<head><title>${behavior.status} Bad Gateway</title></head>\r\n<body>\r\n<center><h1>${behavior.status} Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n`;
        res.writeHead(behavior.status, { 'content-type': 'text/html', 'content-length': String(page.length) });
        res.end(page);
        return;
      }
      case 'invalid-json':
        res.writeHead(200, openAIHeaders('application/json', startedAt));
        res.end('{"id": "chatcmpl-x", "object": "chat.completion", choices: [NaN], usage: undefined}');
        return;
    }

    const reply = answerOpenAI(
      { method: record.method, path: new URL(record.path, 'http://fake').pathname, rawBody },
      {
        text: () => (behavior.kind === 'ok' && behavior.text !== undefined ? behavior.text : `hello from ${name}`),
        usage: behavior.kind === 'ok' ? behavior.usage !== false : true,
        models: MODELS,
      },
    );
    const headers = openAIHeaders(reply.kind === 'json' ? 'application/json' : SSE_CONTENT_TYPE, startedAt);
    if (isHostile(behavior)) {
      await sendHostile(req, res, behavior, reply, headers);
      return;
    }

    if (reply.kind === 'json') {
      if (behavior.kind !== 'hang-after-first-chunk' && behavior.kind !== 'fail-mid-stream') {
        writeJson(res, reply.status, reply.body, headers);
        return;
      }
      // Promise the whole body, deliver half: the client sees a truncated response.
      const text = JSON.stringify(reply.body);
      res.writeHead(reply.status, { ...headers, 'content-length': String(Buffer.byteLength(text)) });
      await write(res, text.slice(0, Math.floor(text.length / 2)));
      if (behavior.kind === 'fail-mid-stream') req.socket.destroy();
      return;
    }

    res.writeHead(200, { ...headers, 'cache-control': 'no-cache' });
    for (const [i, frame] of reply.frames.entries()) {
      if (behavior.kind === 'fail-mid-stream' && i === behavior.afterChunks) {
        req.socket.destroy();
        return;
      }
      if (behavior.kind === 'hang-after-first-chunk' && i === 1) return;
      if (behavior.kind === 'slow-stream' && i > 0)
        await sleep(behavior.chunkDelayMs, undefined, { signal: gone.signal });
      await write(res, frame);
    }
    res.end();
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;

  return {
    name,
    url: `http://127.0.0.1:${port}/v1`,
    requests,
    get connections() {
      return connections;
    },
    next: (behavior) => {
      queue.push(behavior);
    },
    setDefault: (behavior) => {
      fallback = behavior;
    },
    reset: () => {
      queue.length = 0;
      requests.length = 0;
      fallback = { kind: 'ok' };
    },
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      }),
  };
}
