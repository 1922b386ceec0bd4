// The offline upstream behind `guildgate demo`: an OpenAI-compatible server that answers every
// model with a canned, clearly-labelled reply, so the whole relay can be tried without a provider
// account. The pure response builders are exported because the test fake speaks the same shapes.
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { encodeSse } from '../../domain/sse.js';

/** One HTTP request as the response builders see it. */
export interface OpenAIRequest {
  method: string;
  /** URL path without query, e.g. `/v1/chat/completions`. */
  path: string;
  rawBody: string;
}

export interface ReplyOptions {
  /** The assistant's reply, given the prompt size in words. */
  text(promptWords: number): string;
  /** Whether responses report `usage`. */
  usage: boolean;
  /** Ids listed by `GET /v1/models`. */
  models: string[];
}

export type JsonReply = { kind: 'json'; status: number; body: unknown };
/** A JSON answer, or complete SSE frames of which the last is `data: [DONE]`. */
export type OpenAIReply = JsonReply | { kind: 'stream'; frames: string[] };

type Body = Record<string, unknown>;

export function openAIError(
  status: number,
  message: string,
  type: string,
  code: string | null = null,
  param: string | null = null,
): JsonReply {
  return { kind: 'json', status, body: { error: { message, type, param, code } } };
}

/** Headers every answer carries, like OpenAI's. */
export function openAIHeaders(contentType: string, startedAt: number): Record<string, string> {
  return {
    'content-type': contentType,
    'x-request-id': `req_${randomBytes(16).toString('hex')}`,
    'openai-processing-ms': String(Date.now() - startedAt),
  };
}

/** Answers one OpenAI API request: routing, validation and response shapes, no I/O. */
export function answerOpenAI(req: OpenAIRequest, opts: ReplyOptions): OpenAIReply {
  const route = `${req.method} ${req.path.replace(/\/+$/, '')}`;
  if (route === 'GET /v1/models') {
    return {
      kind: 'json',
      status: 200,
      body: {
        object: 'list',
        data: opts.models.map((id) => ({ id, object: 'model', created: 1_700_000_000, owned_by: 'system' })),
      },
    };
  }
  const kind =
    route === 'POST /v1/chat/completions'
      ? 'chat'
      : route === 'POST /v1/completions'
        ? 'text'
        : route === 'POST /v1/embeddings'
          ? 'embeddings'
          : null;
  if (!kind) {
    return openAIError(404, `Invalid URL (${req.method} ${req.path})`, 'invalid_request_error');
  }
  let body: unknown;
  try {
    body = JSON.parse(req.rawBody);
  } catch {
    return openAIError(400, 'We could not parse the JSON body of your request.', 'invalid_request_error');
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    return openAIError(400, 'The request body must be a JSON object.', 'invalid_request_error');
  }
  const b = body as Body;
  if (typeof b.model !== 'string' || b.model === '') {
    return openAIError(400, 'You must provide a model parameter.', 'invalid_request_error', null, 'model');
  }
  const input = kind === 'chat' ? 'messages' : kind === 'text' ? 'prompt' : 'input';
  if (b[input] === undefined || (kind === 'chat' && !Array.isArray(b.messages))) {
    return openAIError(
      400,
      `Missing required parameter: '${input}'.`,
      'invalid_request_error',
      'missing_required_parameter',
      input,
    );
  }
  if (kind === 'embeddings') return embeddings(b, opts.usage);
  return completion(kind, b, opts);
}

/**
 * Deterministic token stand-in: whitespace-separated words of every text (message contents,
 * including text parts; prompts; inputs), a token id counting as one.
 */
export function countWords(value: unknown): number {
  if (typeof value === 'string') return value.split(/\s+/).filter(Boolean).length;
  if (typeof value === 'number') return 1;
  if (Array.isArray(value)) return value.reduce((n: number, v) => n + countWords(v), 0);
  if (typeof value === 'object' && value !== null) {
    const o = value as Body;
    return countWords(o.content) + countWords(o.text);
  }
  return 0;
}

function completion(kind: 'chat' | 'text', b: Body, opts: ReplyOptions): OpenAIReply {
  const promptTokens = countWords(kind === 'chat' ? b.messages : b.prompt);
  const limit = kind === 'chat' ? (b.max_completion_tokens ?? b.max_tokens) : b.max_tokens;
  let words = opts.text(promptTokens).split(/\s+/).filter(Boolean);
  let finishReason = 'stop';
  if (typeof limit === 'number' && limit >= 0 && words.length > limit) {
    words = words.slice(0, limit);
    finishReason = 'length';
  }
  const usage = {
    prompt_tokens: promptTokens,
    completion_tokens: words.length,
    total_tokens: promptTokens + words.length,
  };
  const base = {
    id: `${kind === 'chat' ? 'chatcmpl' : 'cmpl'}-${randomBytes(12).toString('hex')}`,
    object: kind === 'chat' ? 'chat.completion' : 'text_completion',
    created: Math.floor(Date.now() / 1000),
    model: b.model as string,
  };

  if (b.stream !== true) {
    const text = words.join(' ');
    const choice =
      kind === 'chat'
        ? {
            index: 0,
            message: { role: 'assistant', content: text, refusal: null },
            logprobs: null,
            finish_reason: finishReason,
          }
        : { text, index: 0, logprobs: null, finish_reason: finishReason };
    return { kind: 'json', status: 200, body: { ...base, choices: [choice], ...(opts.usage ? { usage } : {}) } };
  }

  const streamOptions = b.stream_options as Body | undefined;
  const withUsage = opts.usage && streamOptions?.include_usage === true;
  const chunk = { ...base, object: kind === 'chat' ? 'chat.completion.chunk' : 'text_completion' };
  // A reply cut to zero words still needs one chunk to carry the role and finish reason.
  const pieces = words.length === 0 ? [''] : words.map((w, i) => (i === 0 ? w : ` ${w}`));
  const frames = pieces.map((piece, i) => {
    const finish = i === pieces.length - 1 ? finishReason : null;
    const choice =
      kind === 'chat'
        ? {
            index: 0,
            delta: i === 0 ? { role: 'assistant', content: piece } : { content: piece },
            logprobs: null,
            finish_reason: finish,
          }
        : { text: piece, index: 0, logprobs: null, finish_reason: finish };
    // With include_usage, OpenAI sends `usage: null` on every chunk but the last.
    return encodeSse(JSON.stringify({ ...chunk, choices: [choice], ...(withUsage ? { usage: null } : {}) }));
  });
  if (withUsage) frames.push(encodeSse(JSON.stringify({ ...chunk, choices: [], usage })));
  frames.push(encodeSse('[DONE]'));
  return { kind: 'stream', frames };
}

function embeddings(b: Body, withUsage: boolean): OpenAIReply {
  // A string or a token array is one input; an array of those is several.
  const inputs =
    typeof b.input === 'string' || (Array.isArray(b.input) && typeof b.input[0] === 'number')
      ? [b.input]
      : Array.isArray(b.input)
        ? b.input
        : [b.input];
  const dims = typeof b.dimensions === 'number' && b.dimensions >= 1 && b.dimensions <= 3072 ? b.dimensions : 8;
  const base64 = b.encoding_format === 'base64';
  const data = inputs.map((input, index) => {
    const vector = vectorOf(JSON.stringify(input), dims);
    return {
      object: 'embedding',
      index,
      embedding: base64 ? Buffer.from(vector.buffer).toString('base64') : Array.from(vector),
    };
  });
  const tokens = countWords(inputs);
  return {
    kind: 'json',
    status: 200,
    body: {
      object: 'list',
      data,
      model: b.model,
      ...(withUsage ? { usage: { prompt_tokens: tokens, total_tokens: tokens } } : {}),
    },
  };
}

/** Same input, same vector: values in [-1, 1] derived from SHA-256 of the input. */
function vectorOf(seed: string, dims: number): Float32Array {
  const vector = new Float32Array(dims);
  for (let block = 0; block * 32 < dims; block++) {
    const digest = createHash('sha256').update(`${block}:${seed}`).digest();
    for (let i = 0; i < 32 && block * 32 + i < dims; i++) vector[block * 32 + i] = digest[i]! / 127.5 - 1;
  }
  return vector;
}

/** Reads a request body as text; null when it exceeds `limitBytes` (the rest is drained). */
export function readBody(req: IncomingMessage, limitBytes: number): Promise<string | null> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= limitBytes) chunks.push(chunk);
    });
    req.on('end', () => resolve(size <= limitBytes ? Buffer.concat(chunks).toString('utf8') : null));
    req.on('error', reject);
  });
}

export function writeJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string>): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { ...headers, 'content-length': String(Buffer.byteLength(text)) });
  res.end(text);
}

export const SSE_CONTENT_TYPE = 'text/event-stream; charset=utf-8';

const DEMO_MODELS = ['guildgate-demo', 'guildgate-demo-embedding'];
const DEMO_BODY_LIMIT = 4 * 1024 * 1024;
const DEMO_WORD_DELAY_MS = 20;

const demoText = (promptWords: number) =>
  `This is Guildgate's demo upstream, not a real model. You said ${promptWords} ${promptWords === 1 ? 'word' : 'words'}.`;

async function handleDemo(req: IncomingMessage, res: ServerResponse): Promise<void> {
  const startedAt = Date.now();
  const rawBody = await readBody(req, DEMO_BODY_LIMIT);
  const path = new URL(req.url ?? '/', 'http://demo').pathname;
  const reply =
    rawBody === null
      ? openAIError(413, 'The request body is too large.', 'invalid_request_error')
      : answerOpenAI(
          { method: req.method ?? 'GET', path, rawBody },
          { text: demoText, usage: true, models: DEMO_MODELS },
        );
  if (reply.kind === 'json') {
    writeJson(res, reply.status, reply.body, openAIHeaders('application/json', startedAt));
    return;
  }
  // Stop typing when the client goes away.
  const gone = new AbortController();
  res.on('close', () => gone.abort());
  res.writeHead(200, { ...openAIHeaders(SSE_CONTENT_TYPE, startedAt), 'cache-control': 'no-cache' });
  for (const [i, frame] of reply.frames.entries()) {
    if (i > 0) await sleep(DEMO_WORD_DELAY_MS, undefined, { signal: gone.signal });
    res.write(frame);
  }
  res.end();
}

/** Starts the demo upstream; its `url` ends in `/v1`, ready to be an upstream `baseUrl`. */
export async function startDemoUpstream(opts?: {
  host?: string;
  port?: number;
}): Promise<{ url: string; close(): Promise<void> }> {
  const host = opts?.host ?? '127.0.0.1';
  const server = createServer((req, res) => {
    handleDemo(req, res).catch(() => res.destroy());
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts?.port ?? 0, host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://${host.includes(':') ? `[${host}]` : host}:${port}/v1`,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      }),
  };
}
