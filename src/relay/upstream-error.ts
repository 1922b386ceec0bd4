// What the client gets when the upstream answered with a non-2xx status. A provider's 4xx passes
// through in OpenAI's shape; its auth failures, rate limits and 5xx become the relay's own answers,
// and their texts stay in the relay's logs (a 401/403 is about the operator's provider key and its
// message may quote part of it; 5xx texts are internals).
import type { UpstreamResponse } from '../domain/ports.js';
import type { Services } from '../services.js';
import type { Exchange } from './api/exchange.js';
import { writeJson } from './api/respond.js';
import { type ErrorBody, errorBody } from './errors.js';
import { MAX_BUFFERED_BODY, parseObject } from './upstream-answer.js';

interface Answer {
  status: number;
  body: ErrorBody;
  headers?: Record<string, string>;
}

/** The relay's own answer for an upstream status it does not pass through; null for a 4xx it does. */
function ownAnswer(r: UpstreamResponse, upstream: string): Answer | null {
  if (r.status === 401 || r.status === 403) {
    return {
      status: 502,
      body: errorBody(
        'The relay could not authenticate with its upstream provider. The operator has been told.',
        'api_error',
        'upstream_auth_failed',
      ),
    };
  }
  if (r.status === 429) {
    const retry = r.headers['retry-after'];
    return {
      status: 503,
      body: errorBody(
        'The upstream provider is rate limiting the relay. Try again shortly.',
        'service_unavailable',
        'upstream_rate_limited',
      ),
      headers: { 'retry-after': retry && /^\d+$/.test(retry) ? retry : '1' },
    };
  }
  if (r.status >= 500) {
    return {
      status: 502,
      body: errorBody(
        `The upstream provider "${upstream}" failed (HTTP ${r.status}). Try again shortly.`,
        'api_error',
        'upstream_error',
      ),
    };
  }
  return null;
}

/** The provider's 4xx in OpenAI's shape: its own error fields when it sent them. */
function passedThrough(r: UpstreamResponse, err: Record<string, unknown> | undefined): Answer {
  const str = (v: unknown) => (typeof v === 'string' ? v : null);
  const message = str(err?.message);
  return {
    status: r.status,
    body:
      message !== null
        ? errorBody(message, str(err?.type) ?? 'invalid_request_error', str(err?.code), str(err?.param))
        : errorBody(`The upstream provider rejected the request (HTTP ${r.status}).`, 'invalid_request_error', null),
  };
}

/** Answers the client for a non-2xx upstream response; returns the status sent. */
export async function relayUpstreamError(
  s: Services,
  x: Exchange,
  r: UpstreamResponse,
  upstream: string,
): Promise<number> {
  const raw = await r.read(MAX_BUFFERED_BODY).catch(() => Buffer.alloc(0));
  const err = parseObject(raw.toString('utf8'))?.error as Record<string, unknown> | undefined;
  const own = ownAnswer(r, upstream);
  // An upstream rate limit is routine and its text harmless; the others need the operator.
  if (own && r.status !== 429) {
    s.log.warn({ requestId: x.requestId, upstream, status: r.status, code: err?.code }, 'upstream refused or failed');
  }
  const answer = own ?? passedThrough(r, err);
  writeJson(x, answer.status, answer.body, answer.headers);
  return answer.status;
}
