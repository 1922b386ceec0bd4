// Relays one admitted request to an upstream and answers the client: JSON passes through as
// received (relay-json.ts); SSE is forwarded as it arrives (relay-stream.ts); a non-2xx answer is
// mapped (upstream-error.ts). Whatever happens (success, upstream error, mid-stream failure, client
// disconnect), the budget is settled exactly once and one usage record is written.
import { type Admission, admit, billable, charge, settle } from '../app/admission.js';
import { forward } from '../app/forward.js';
import { Cancellation } from '../domain/cancellation.js';
import { AppError, UpstreamTimeoutError } from '../domain/errors.js';
import type { Services } from '../services.js';
import type { Exchange } from './api/exchange.js';
import { writeError } from './api/respond.js';
import type { Outcome, RelayCall } from './relay-call.js';
import { relayJson } from './relay-json.js';
import { relayStream } from './relay-stream.js';
import { relayUpstreamError } from './upstream-error.js';

const CAP_FIELDS = ['max_tokens', 'max_completion_tokens'] as const;

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

/** Admits and relays one request; tracked so shutdown waits for its usage record and settle. */
export function relayCall(s: Services, x: Exchange, call: RelayCall): Promise<void> {
  return s.inflight.track(relay(s, x, call), call.stream);
}

async function relay(s: Services, x: Exchange, call: RelayCall): Promise<void> {
  const { res } = x;
  const started = performance.now();
  // Listen before the first await: a client gone during admission must abort too.
  const cancellation = new Cancellation();
  const onClose = () => {
    if (!res.writableFinished) cancellation.abort();
  };
  res.on('close', onClose);
  if (res.destroyed) cancellation.abort();
  let adm: Admission;
  try {
    const { key, tier } = x.auth!;
    adm = await admit(
      s.limits,
      { requestId: x.requestId, key, tier, pass: x.pass },
      {
        model: call.modelName,
        weight: call.model.tokenWeight,
        promptTokens: call.promptTokens,
        // No tokenizer counts more tokens than the text has bytes; images are in the estimate.
        promptCeiling: Math.max(call.promptTokens, x.bodyBytes ?? 0),
        requestedMaxTokens: call.requestedMaxTokens,
        completions: call.completions,
      },
    );
  } catch (err) {
    res.off('close', onClose);
    throw err;
  }
  for (const name in adm.headers) x.headers.push(name, adm.headers[name]!);

  let outcome: Outcome = {
    status: 'upstream_error',
    httpStatus: 502,
    promptTokens: 0,
    completionTokens: 0,
    estimated: false,
    upstream: null,
  };
  try {
    if (cancellation.aborted) {
      // Gone before anything was sent upstream: recorded, charged nothing.
      outcome = { ...outcome, status: 'aborted', httpStatus: 499 };
      return;
    }
    const fwd = await forward(
      s.upstream,
      call.model,
      { path: call.path, body: upstreamBody(call, adm), requestId: x.requestId, cancellation },
      (info) => s.log.warn({ requestId: x.requestId, ...info }, 'upstream failed before first byte; failing over'),
    );
    outcome.upstream = fwd.upstream;
    const r = fwd.response;
    const isSse = (r.headers['content-type'] ?? '').includes('text/event-stream');
    if (r.status < 200 || r.status >= 300) {
      const httpStatus = await relayUpstreamError(s, x, r, fwd.upstream);
      outcome = { ...outcome, status: httpStatus < 500 ? 'client_error' : 'upstream_error', httpStatus };
    } else if (call.stream && isSse) {
      outcome = { ...(await relayStream(s, x, r, fwd.upstream, call, cancellation)), upstream: fwd.upstream };
    } else {
      outcome = { ...(await relayJson(x, r, call)), upstream: fwd.upstream };
    }
  } catch (err) {
    // Once the prompt may have reached a provider (client gone, or no answer in time) it may be
    // billed, so it is charged; a connection that never opened costs nothing.
    const promptSent = { promptTokens: call.promptTokens, estimated: true };
    if (cancellation.aborted) {
      outcome = { ...outcome, ...promptSent, status: 'aborted', httpStatus: 499 };
    } else if (err instanceof AppError) {
      outcome = { ...outcome, ...(err instanceof UpstreamTimeoutError ? promptSent : {}), httpStatus: err.status };
      if (!res.headersSent) writeError(x, err);
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
