// Sends a request to the first upstream route that answers. Failover happens only before the first
// byte of a response reaches the client: on connect errors, timeouts, 5xx and 429.
import type { ModelConfig } from '../config/schema.js';
import type { Cancellation } from '../domain/cancellation.js';
import { ServiceUnavailableError, UpstreamTimeoutError, UpstreamUnavailableError } from '../domain/errors.js';
import type { Upstream, UpstreamResponse } from '../domain/ports.js';

export interface Forwarded {
  response: UpstreamResponse;
  upstream: string;
}

function shouldFailOver(status: number): boolean {
  return status === 429 || status >= 500;
}

export async function forward(
  upstream: Upstream,
  model: ModelConfig,
  call: { path: string; body: Record<string, unknown>; requestId: string; cancellation: Cancellation },
  onFailover?: (info: { upstream: string; reason: string }) => void,
): Promise<Forwarded> {
  for (const [i, route] of model.routes.entries()) {
    const isLast = i === model.routes.length - 1;
    try {
      const response = await upstream.send({
        upstream: route.upstream,
        path: call.path,
        method: 'POST',
        body: { ...call.body, model: route.model },
        requestId: call.requestId,
        cancellation: call.cancellation,
      });
      if (isLast || !shouldFailOver(response.status)) return { response, upstream: route.upstream };
      response.cancel();
      onFailover?.({ upstream: route.upstream, reason: `status ${response.status}` });
    } catch (error) {
      if (call.cancellation.aborted) throw error;
      if (!(error instanceof UpstreamUnavailableError || error instanceof UpstreamTimeoutError)) throw error;
      if (isLast) throw error;
      onFailover?.({ upstream: route.upstream, reason: error.code });
    }
  }
  // Only reachable with zero routes, which config validation forbids.
  throw new ServiceUnavailableError('No upstream serves this model.');
}
