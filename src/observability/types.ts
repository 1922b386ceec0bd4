// What the relay, the use cases and the adapters tell the metrics. No prom-client here: callers depend
// on this interface only, and every method is synchronous and cheap enough for the request path.
import type { UsageRecord } from '../domain/types.js';

/** Why an upstream call counts as failed (for failover and alerting). */
export type UpstreamErrorKind = 'connect' | 'timeout' | 'status_5xx' | 'rate_limited' | 'auth' | 'mid_stream';

export interface Metrics {
  /** Every HTTP response the relay sent: `path` is classified into a bounded route label. */
  response(path: string, status: number): void;
  /** An error answer the relay chose to send itself (its OpenAI `code` names the reason). */
  refusal(code: string): void;
  /** A relayed request, once, from its usage record: requests by route, model and status; tokens. */
  relayed(r: Pick<UsageRecord, 'endpoint' | 'model' | 'httpStatus' | 'status' | 'chargedTokens'>): void;
  /** An upstream answered with headers after `seconds` (any status). */
  upstreamResponse(upstream: string, status: number, seconds: number): void;
  /** An upstream call that failed before an answer (connect error, timeout). */
  upstreamError(upstream: string, kind: UpstreamErrorKind): void;
  /** A backing service failed an operation: the store, or Redis (connection, limiter calls). */
  backendError(backend: 'store' | 'redis', op: string): void;
  /** Usage records dropped because the write queue overflowed. */
  usageDropped(count: number): void;
}

/** Values read only when Prometheus scrapes, so keeping them costs the request path nothing. */
export interface ScrapeSources {
  usageQueueDepth(): number;
  requestsInFlight(): number;
  streamsInFlight(): number;
}
