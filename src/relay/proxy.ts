// Relays one admitted request to an upstream and answers the client: JSON passes through as
// received; SSE is forwarded event by event as it arrives. Whatever happens (success, upstream
// error, mid-stream failure, client disconnect), the budget is settled exactly once and one usage
// record is written.
import type { ServerResponse } from 'node:http';
import { type Admission, billable, charge, reserve, settle, type Ticket } from '../app/admission.js';
import { forward } from '../app/forward.js';
import type { ModelConfig } from '../config/schema.js';
import { AppError, UpstreamTimeoutError, UpstreamUnavailableError } from '../domain/errors.js';
import type { UpstreamResponse } from '../domain/ports.js';
import { SseParser } from '../domain/sse.js';
import type { TokenMeter } from '../domain/token-estimate.js';
import type { UsageRecord, UsageStatus } from '../domain/types.js';
import type { Services } from '../services.js';
import type { Exchange } from './api/exchange.js';
import { writeError, writeJson } from './api/respond.js';
import { errorBody } from './errors.js';

export interface RelayCall {
  endpoint: UsageRecord['endpoint'];
  path: string;
  modelName: string;
  model: ModelConfig;
  body: Record<string, unknown>;
  /** Upper bound on the prompt tokens. */
  promptTokens: number;
  /** The meter that estimated the prompt; it counts produced text when the upstream reports no usage. */
  meter: TokenMeter;
  stream: boolean;
  /** Field to add when the client sent no completion cap; null for embeddings (no completion). */
  maxTokensField: 'max_tokens' | 'max_completion_tokens' | null;
  requestedMaxTokens: number | null;
  /** Completions the upstream generates (choices × prompts); 0 for embeddings. */
  completions: number;
}

interface Outcome {
  status: UsageStatus;
  httpStatus: number;
  promptTokens: number;
  completionTokens: number;
  estimated: boolean;
  upstream: string | null;
}

/** Largest upstream body (JSON answer or error) read into memory. */
const MAX_BUFFERED_BODY = 16 * 1024 * 1024;
const EVENT_END = /\r\n\r\n|\n\n|\r\r/;
/** An SSE event larger than this is not a model's answer: the stream is treated as broken. */
const MAX_EVENT_CHARS = 4 * 1024 * 1024;
/** Forwarded chunk data kept for counting before it is counted and dropped. */
const FOLD_CHARS = 256 * 1024;
const CAP_FIELDS = ['max_tokens', 'max_completion_tokens'] as const;
/** A chunk whose `usage` is an object (not the `null` OpenAI puts in every other chunk). */
const USAGE_OBJECT = /"usage"\s*:\s*\{/;

/** An error while reading an upstream body, as the client should see it (aborts pass through). */
function bodyError(err: unknown): unknown {
  if (err instanceof AppError || (err as Error)?.name === 'AbortError') return err;
  if ((err as { code?: string })?.code === 'UND_ERR_BODY_TIMEOUT') {
    return new UpstreamTimeoutError('The upstream provider stopped sending its answer.', err);
  }
  return new UpstreamUnavailableError('The upstream connection failed while reading its answer.', err);
}

async function readAll(body: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += chunk.byteLength;
    if (size > MAX_BUFFERED_BODY) throw new UpstreamUnavailableError('The upstream response was too large.');
    parts.push(Buffer.from(chunk));
  }
  return Buffer.concat(parts);
}

function parseObject(text: string): Record<string, unknown> | null {
  try {
    const v = JSON.parse(text);
    return v && typeof v === 'object' && !Array.isArray(v) ? v : null;
  } catch {
    return null;
  }
}

interface UsageShape {
  prompt_tokens?: number;
  completion_tokens?: number;
}

const isCount = (n: unknown): n is number => Number.isSafeInteger(n) && (n as number) >= 0;

/** The provider's `usage`, when it is well formed; anything else is treated as missing (and estimated). */
function readUsage(obj: Record<string, unknown> | null): { prompt: number; completion: number } | null {
  const u = obj?.usage as UsageShape | null | undefined;
  if (!u || !isCount(u.prompt_tokens)) return null;
  if (u.completion_tokens !== undefined && !isCount(u.completion_tokens)) return null;
  return { prompt: u.prompt_tokens, completion: u.completion_tokens ?? 0 };
}

/** Text the model produced in a JSON answer or a stream chunk (chat and legacy completions). */
function producedText(obj: Record<string, unknown> | null): string {
  const choices = obj?.choices;
  if (!Array.isArray(choices)) return '';
  let text = '';
  for (const c of choices as Array<Record<string, unknown>>) {
    const msg = (c.delta ?? c.message) as Record<string, unknown> | undefined;
    if (typeof msg?.content === 'string') text += msg.content;
    if (msg?.tool_calls !== undefined) text += JSON.stringify(msg.tool_calls);
    if (typeof c.text === 'string') text += c.text;
  }
  return text;
}

function upstreamBody(call: RelayCall, adm: Admission): Record<string, unknown> {
  const body: Record<string, unknown> = { ...call.body };
  if (call.maxTokensField) {
    // Clamp every cap the client sent; with none, add the model's own field so the reservation
    // stays an upper bound.
    let present = false;
    for (const field of CAP_FIELDS) {
      const asked = body[field];
      if (typeof asked === 'number') {
        body[field] = Math.min(asked, adm.maxCompletionTokens);
        present = true;
      }
    }
    if (!present) body[call.maxTokensField] = adm.maxCompletionTokens;
  }
  if (call.stream) {
    // Always ask for usage so the budget is settled from the provider's own count.
    body.stream_options = { ...(call.body.stream_options as object | null | undefined), include_usage: true };
  }
  return body;
}

/** Maps a non-2xx upstream answer to what the client gets. 4xx bodies pass through in OpenAI shape. */
async function relayUpstreamError(s: Services, x: Exchange, r: UpstreamResponse, upstream: string): Promise<number> {
  const { res } = x;
  const raw = await readAll(r.body).catch(() => Buffer.alloc(0));
  const json = parseObject(raw.toString('utf8'));
  const err = json?.error as Record<string, unknown> | undefined;
  const message = typeof err?.message === 'string' ? err.message : null;
  if (r.status === 401 || r.status === 403 || r.status >= 500) {
    // The provider's words stay in our logs: a 401/403 is about the operator's provider key (its
    // message may quote part of it), not the member's relay key, and 5xx texts are internals.
    s.log.warn({ requestId: x.requestId, upstream, status: r.status, code: err?.code }, 'upstream refused or failed');
  }
  if (r.status === 401 || r.status === 403) {
    writeJson(
      res,
      502,
      errorBody(
        'The relay could not authenticate with its upstream provider. The operator has been told.',
        'api_error',
        'upstream_auth_failed',
      ),
    );
    return 502;
  }
  if (r.status === 429) {
    const retry = r.headers['retry-after'];
    writeJson(
      res,
      503,
      errorBody(
        'The upstream provider is rate limiting the relay. Try again shortly.',
        'service_unavailable',
        'upstream_rate_limited',
      ),
      { 'retry-after': retry && /^\d+$/.test(retry) ? retry : '1' },
    );
    return 503;
  }
  if (r.status >= 500) {
    writeJson(
      res,
      502,
      errorBody(
        `The upstream provider "${upstream}" failed (HTTP ${r.status}). Try again shortly.`,
        'api_error',
        'upstream_error',
      ),
    );
    return 502;
  }
  if (err && message !== null) {
    writeJson(
      res,
      r.status,
      errorBody(
        message,
        typeof err.type === 'string' ? err.type : 'invalid_request_error',
        typeof err.code === 'string' ? err.code : null,
        typeof err.param === 'string' ? err.param : null,
      ),
    );
  } else {
    writeJson(
      res,
      r.status,
      errorBody(`The upstream provider rejected the request (HTTP ${r.status}).`, 'invalid_request_error', null),
    );
  }
  return r.status;
}

async function relayJson(
  res: ServerResponse,
  r: UpstreamResponse,
  call: RelayCall,
): Promise<Omit<Outcome, 'upstream'>> {
  const raw = await readAll(r.body).catch((err) => {
    throw bodyError(err);
  });
  const json = parseObject(raw.toString('utf8'));
  if (!json) {
    writeJson(
      res,
      502,
      errorBody('The upstream provider sent an invalid JSON response.', 'api_error', 'bad_upstream_response'),
    );
    return { status: 'upstream_error', httpStatus: 502, promptTokens: 0, completionTokens: 0, estimated: false };
  }
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': raw.length }).end(raw);
  const usage = readUsage(json);
  if (usage) {
    return {
      status: 'ok',
      httpStatus: 200,
      promptTokens: usage.prompt,
      completionTokens: usage.completion,
      estimated: false,
    };
  }
  return {
    status: 'ok',
    httpStatus: 200,
    promptTokens: call.promptTokens,
    completionTokens: call.meter.text(producedText(json)),
    estimated: true,
  };
}

function write(res: ServerResponse, data: string): Promise<void> {
  if (res.destroyed || res.writableEnded) return Promise.resolve();
  if (res.write(data)) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.once('drain', done);
    res.once('close', done);
  });
}

async function relayStream(
  s: Services,
  x: Exchange,
  r: UpstreamResponse,
  call: RelayCall,
  signal: AbortSignal,
): Promise<Omit<Outcome, 'upstream'>> {
  const { res } = x;
  const clientWantsUsage = (call.body.stream_options as { include_usage?: unknown } | null | undefined)?.include_usage;
  res.statusCode = 200;
  res.setHeader('content-type', 'text/event-stream; charset=utf-8');
  res.setHeader('cache-control', 'no-cache');
  res.setHeader('connection', 'keep-alive');
  res.setHeader('x-accel-buffering', 'no');

  const decoder = new TextDecoder();
  const parser = new SseParser();
  let pending = '';
  /** Data of the forwarded chunks, parsed only if the delivered text has to be counted. */
  let forwarded: string[] = [];
  let forwardedChars = 0;
  /** Tokens of forwarded text already counted (long streams are folded as they go). */
  let deliveredTokens = 0;
  const countForwarded = () => {
    deliveredTokens += call.meter.text(forwarded.map((data) => producedText(parseObject(data))).join(''));
    forwarded = [];
    forwardedChars = 0;
  };
  let usage: { prompt: number; completion: number } | null = null;
  let failure: unknown = null;

  /** Observes one raw event; returns what to forward of it (the event unchanged, or nothing). */
  const handle = (raw: string): string => {
    let forwardIt = true;
    for (const ev of parser.push(raw)) {
      if (ev.data === '[DONE]') continue;
      // Only chunks carrying a usage object need parsing on the way through.
      if (USAGE_OBJECT.test(ev.data)) {
        const obj = parseObject(ev.data);
        const u = readUsage(obj);
        if (u) usage = u;
        // The usage-only chunk we asked for on the client's behalf is not theirs to see.
        if (u && !clientWantsUsage && Array.isArray(obj?.choices) && obj.choices.length === 0) {
          forwardIt = false;
          continue;
        }
      }
      forwarded.push(ev.data);
      forwardedChars += ev.data.length;
      if (forwardedChars > FOLD_CHARS) countForwarded();
    }
    return forwardIt ? raw : '';
  };

  try {
    for await (const chunk of r.body) {
      pending += decoder.decode(chunk, { stream: true });
      if (pending.length > MAX_EVENT_CHARS)
        throw new UpstreamUnavailableError('The upstream sent an oversized SSE event.');
      // The events of one upstream chunk leave in one socket write (headers go with the first).
      let out = '';
      for (let m = EVENT_END.exec(pending); m; m = EVENT_END.exec(pending)) {
        const end = m.index + m[0].length;
        out += handle(pending.slice(0, end));
        pending = pending.slice(end);
      }
      if (out) await write(res, out);
    }
    pending += decoder.decode();
    if (pending) await write(res, handle(pending));
  } catch (err) {
    failure = err;
  }

  const aborted = signal.aborted;
  if (failure && !aborted) {
    s.log.warn({ err: failure, requestId: x.requestId }, 'upstream stream failed mid-way');
    const body = errorBody(
      'The upstream stream failed before completing. The partial response above is all that was received.',
      'api_error',
      'upstream_stream_error',
    );
    await write(res, `data: ${JSON.stringify(body)}\n\n`);
  }
  res.end();

  const status: UsageStatus = aborted ? 'aborted' : failure ? 'upstream_error' : 'ok';
  const complete = usage as { prompt: number; completion: number } | null;
  if (complete && !aborted && !failure) {
    return {
      status,
      httpStatus: 200,
      promptTokens: complete.prompt,
      completionTokens: complete.completion,
      estimated: false,
    };
  }
  // No usage from the provider, or the stream ended early: charge what was delivered.
  countForwarded();
  return {
    status,
    httpStatus: 200,
    promptTokens: complete?.prompt ?? call.promptTokens,
    completionTokens: deliveredTokens,
    estimated: true,
  };
}

/** Relays one request that holds a ticket; tracked so shutdown waits for its usage record and settle. */
export function relayCall(s: Services, x: Exchange, call: RelayCall): Promise<void> {
  return s.inflight.track(relay(s, x, call, x.ticket!), call.stream);
}

async function relay(s: Services, x: Exchange, call: RelayCall, ticket: Ticket): Promise<void> {
  const { res } = x;
  const started = performance.now();
  // Listen before the first await: a client gone during admission must abort too.
  const controller = new AbortController();
  const onClose = () => {
    if (!res.writableFinished) controller.abort();
  };
  res.on('close', onClose);
  if (res.destroyed) controller.abort();
  let adm: Admission;
  try {
    adm = await reserve(s.limits, ticket, {
      model: call.modelName,
      weight: call.model.tokenWeight,
      promptTokens: call.promptTokens,
      // No tokenizer counts more tokens than the text has bytes; images are in the estimate.
      promptCeiling: Math.max(call.promptTokens, x.bodyBytes ?? 0),
      requestedMaxTokens: call.requestedMaxTokens,
      completions: call.completions,
    });
  } catch (err) {
    res.off('close', onClose);
    throw err;
  }
  for (const name in adm.headers) res.setHeader(name, adm.headers[name]!);

  let outcome: Outcome = {
    status: 'upstream_error',
    httpStatus: 502,
    promptTokens: 0,
    completionTokens: 0,
    estimated: false,
    upstream: null,
  };
  try {
    if (controller.signal.aborted) {
      // Gone before anything was sent upstream: recorded, charged nothing.
      outcome = { ...outcome, status: 'aborted', httpStatus: 499 };
      return;
    }
    const fwd = await forward(
      s.upstream,
      call.model,
      { path: call.path, body: upstreamBody(call, adm), requestId: ticket.requestId, signal: controller.signal },
      (info) => s.log.warn({ requestId: ticket.requestId, ...info }, 'upstream failed before first byte; failing over'),
    );
    outcome.upstream = fwd.upstream;
    const r = fwd.response;
    const isSse = (r.headers['content-type'] ?? '').includes('text/event-stream');
    if (r.status < 200 || r.status >= 300) {
      const httpStatus = await relayUpstreamError(s, x, r, fwd.upstream);
      outcome = { ...outcome, status: httpStatus < 500 ? 'client_error' : 'upstream_error', httpStatus };
    } else if (call.stream && isSse) {
      outcome = { ...(await relayStream(s, x, r, call, controller.signal)), upstream: fwd.upstream };
    } else {
      outcome = { ...(await relayJson(res, r, call)), upstream: fwd.upstream };
    }
  } catch (err) {
    // Once the prompt may have reached a provider (client gone, or no answer in time) it may be
    // billed, so it is charged; a connection that never opened costs nothing.
    const promptSent = { promptTokens: call.promptTokens, estimated: true };
    if (controller.signal.aborted) {
      outcome = { ...outcome, ...promptSent, status: 'aborted', httpStatus: 499 };
    } else if (err instanceof AppError) {
      outcome = { ...outcome, ...(err instanceof UpstreamTimeoutError ? promptSent : {}), httpStatus: err.status };
      if (!res.headersSent) writeError(res, err);
    } else {
      throw err;
    }
  } finally {
    res.off('close', onClose);
    await finish(s, adm, call, outcome, started);
  }
}

/** Records the request and settles its budget. The record never depends on the limiter store being up. */
async function finish(s: Services, adm: Admission, call: RelayCall, o: Outcome, started: number): Promise<void> {
  const { requestId, key } = adm.ticket;
  const billed = billable(adm, o);
  if (!o.estimated && (billed.promptTokens < o.promptTokens || billed.completionTokens < o.completionTokens)) {
    // The provider counted more than the relay let it produce: a tokenizer that differs from ours,
    // or a miscount. Billed at the bound; the operator should know.
    s.log.warn(
      { requestId, upstream: o.upstream, reported: { prompt: o.promptTokens, completion: o.completionTokens } },
      'upstream reported more tokens than the reservation allowed; billed at the reservation',
    );
  }
  s.usage.record({
    requestId,
    keyId: key.id,
    discordId: key.discordId,
    model: call.modelName,
    upstream: o.upstream,
    endpoint: call.endpoint,
    promptTokens: billed.promptTokens,
    completionTokens: billed.completionTokens,
    chargedTokens: charge(adm, billed),
    estimated: o.estimated,
    status: o.status,
    httpStatus: o.httpStatus,
    latencyMs: Math.round(performance.now() - started),
    stream: call.stream,
    createdAt: s.now(),
  });
  await settle(s.limits, adm, billed).catch((err) => s.log.error({ err, requestId }, 'settling the request failed'));
}
