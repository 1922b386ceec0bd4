// Upstream latency and failures, measured around the upstream adapter so every call is seen, whichever
// code path (failover loop, doctor) makes it: time to response headers, and calls that got no answer.
import { UpstreamTimeoutError, UpstreamUnavailableError } from '../domain/errors.js';
import type { Upstream } from '../domain/ports.js';
import type { Metrics } from './types.js';

export function instrumentUpstream(inner: Upstream, metrics: Metrics): Upstream {
  return {
    async send(call) {
      const started = performance.now();
      try {
        const response = await inner.send(call);
        metrics.upstreamResponse(call.upstream, response.status, (performance.now() - started) / 1000);
        return response;
      } catch (err) {
        // A client gone mid-call is not the upstream's failure.
        if (!call.cancellation.aborted) {
          if (err instanceof UpstreamTimeoutError) metrics.upstreamError(call.upstream, 'timeout');
          else if (err instanceof UpstreamUnavailableError) metrics.upstreamError(call.upstream, 'connect');
        }
        throw err;
      }
    },
    close: () => inner.close(),
  };
}
