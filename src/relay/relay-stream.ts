// Relays an SSE answer as it arrives, reading the provider's usage on the way through. When the
// client asked for usage itself, nothing is ever held back, so the upstream's bytes are written as
// they come (no re-encoding); otherwise whole events are forwarded and the usage-only chunk the relay
// asked for on the client's behalf is dropped.
import type { ServerResponse } from 'node:http';
import type { Cancellation } from '../domain/cancellation.js';
import { UpstreamUnavailableError } from '../domain/errors.js';
import type { UpstreamResponse } from '../domain/ports.js';
import { SseParser } from '../domain/sse.js';
import type { UsageStatus } from '../domain/types.js';
import type { Services } from '../services.js';
import type { Exchange } from './api/exchange.js';
import { writeHead } from './api/respond.js';
import { errorBody } from './errors.js';
import type { RelayCall, Relayed } from './relay-call.js';
import { parseObject, producedText, readUsage, type Usage } from './upstream-answer.js';

const EVENT_END = /\r\n\r\n|\n\n|\r\r/;
/** An SSE event larger than this is not a model's answer: the stream is treated as broken. */
const MAX_EVENT_CHARS = 4 * 1024 * 1024;
/** Passed-through bytes held before their events are read. */
const HOLD_BYTES = 64 * 1024;
/** Forwarded chunk data kept for counting before it is counted and dropped. */
const FOLD_CHARS = 256 * 1024;
const SSE_HEADERS = [
  'content-type',
  'text/event-stream; charset=utf-8',
  'cache-control',
  'no-cache',
  'connection',
  'keep-alive',
  'x-accel-buffering',
  'no',
];
/** A chunk whose `usage` is an object (not the `null` OpenAI puts in every other chunk). */
const USAGE_OBJECT = /"usage"\s*:\s*\{/;

function write(res: ServerResponse, data: string | Uint8Array): Promise<void> {
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

export async function relayStream(
  s: Services,
  x: Exchange,
  r: UpstreamResponse,
  upstream: string,
  call: RelayCall,
  cancellation: Cancellation,
): Promise<Relayed> {
  const { res } = x;
  const clientWantsUsage =
    (call.body.stream_options as { include_usage?: unknown } | null | undefined)?.include_usage === true;
  // The head leaves with the first bytes: until then, a failure can still be answered as an error.
  let headSent = false;
  const head = () => {
    if (headSent) return;
    headSent = true;
    writeHead(x, 200, SSE_HEADERS);
  };
  const send = (data: string | Uint8Array) => {
    head();
    return write(res, data);
  };

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
  let usage: Usage | null = null;
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

  /** Decodes bytes (null: the end) and returns what to forward of the events completed by them. */
  const digest = (bytes: Uint8Array | null): string => {
    pending += bytes ? decoder.decode(bytes, { stream: true }) : decoder.decode();
    if (pending.length > MAX_EVENT_CHARS)
      throw new UpstreamUnavailableError('The upstream sent an oversized SSE event.');
    let out = '';
    for (let m = EVENT_END.exec(pending); m; m = EVENT_END.exec(pending)) {
      const end = m.index + m[0].length;
      out += handle(pending.slice(0, end));
      pending = pending.slice(end);
    }
    return out;
  };
  // Passed-through bytes are read in batches rather than chunk by chunk: a stream's usage comes at
  // its end, so nothing is lost by looking later, and most chunks then cost one array push.
  let held: Uint8Array[] = [];
  let heldBytes = 0;
  const digestHeld = () => {
    if (held.length === 0) return;
    const bytes = held.length === 1 ? held[0]! : Buffer.concat(held, heldBytes);
    held = [];
    heldBytes = 0;
    digest(bytes);
  };

  try {
    for await (const chunk of r.body) {
      if (clientWantsUsage) {
        held.push(chunk);
        heldBytes += chunk.byteLength;
        if (heldBytes >= HOLD_BYTES) digestHeld();
        await send(chunk);
      } else {
        // The events of one upstream chunk leave in one socket write (headers go with the first).
        const out = digest(chunk);
        if (out) await send(out);
      }
    }
    digestHeld();
    const rest = digest(null) + (pending ? handle(pending) : '');
    pending = '';
    if (!clientWantsUsage && rest) await send(rest);
  } catch (err) {
    failure = err;
    try {
      // What was delivered before the failure is still counted.
      digestHeld();
    } catch {
      // An oversized event: already the failure being reported.
    }
  }

  const aborted = cancellation.aborted;
  if (failure && !aborted) {
    s.log.warn({ err: failure, requestId: x.requestId, upstream }, 'upstream stream failed mid-way');
    s.metrics.upstreamError(upstream, 'mid_stream');
    const body = errorBody(
      'The upstream stream failed before completing. The partial response above is all that was received.',
      'api_error',
      'upstream_stream_error',
    );
    // Passed-through bytes may have ended inside an event: close it first.
    const separator = clientWantsUsage && pending ? '\n\n' : '';
    await send(`${separator}data: ${JSON.stringify(body)}\n\n`);
  }
  head();
  res.end();

  const status: UsageStatus = aborted ? 'aborted' : failure ? 'upstream_error' : 'ok';
  const complete = usage as Usage | null;
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
