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
  | { kind: 'slow-stream'; chunkDelayMs: number };

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

function write(res: ServerResponse, chunk: string): Promise<void> {
  return new Promise((resolve, reject) => res.write(chunk, (err) => (err ? reject(err) : resolve())));
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
