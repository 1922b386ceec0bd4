// The `Upstream` port over undici: one keep-alive pool per configured upstream, raw bytes out
// (each call a dispatch handler: call-handler.ts).
import { Pool } from 'undici';
import type { UpstreamConfig } from '../../config/schema.js';
import { UpstreamTimeoutError, UpstreamUnavailableError } from '../../domain/errors.js';
import type { Upstream, UpstreamCall, UpstreamResponse } from '../../domain/ports.js';
import { CallHandler } from './call-handler.js';

interface Target {
  pool: Pool;
  /** Path of the base URL without trailing slash, e.g. `/v1`. */
  basePath: string;
  apiKey: string | undefined;
}

// Failures that mean "could not talk to the upstream at all": DNS, TCP, TLS, or a socket that
// closed (or spoke something other than HTTP) before response headers arrived.
const UNREACHABLE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ETIMEDOUT',
  'EPIPE',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_SOCKET',
]);
const UNREACHABLE_PREFIXES = /^(ERR_TLS_|ERR_SSL_|CERT_|DEPTH_ZERO_|SELF_SIGNED_|UNABLE_TO_|HPE_)/;

function errorCode(err: unknown): string | null {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : null;
}

export class UndiciUpstream implements Upstream {
  private readonly targets = new Map<string, Target>();

  /**
   * Pools are per upstream name rather than shared per origin, so each upstream's own
   * `connections` and `connectMs` hold exactly. `apiKeys` are resolved keys by upstream name.
   */
  constructor(upstreams: Record<string, UpstreamConfig>, apiKeys: Record<string, string | undefined>) {
    for (const [name, cfg] of Object.entries(upstreams)) {
      const url = new URL(cfg.baseUrl);
      this.targets.set(name, {
        pool: new Pool(url.origin, {
          connections: cfg.connections,
          connectTimeout: cfg.timeouts.connectMs,
          headersTimeout: cfg.timeouts.firstByteMs,
          bodyTimeout: cfg.timeouts.idleMs,
        }),
        basePath: url.pathname.replace(/\/+$/, ''),
        apiKey: apiKeys[name] || undefined,
      });
    }
  }

  async send(call: UpstreamCall): Promise<UpstreamResponse> {
    const target = this.targets.get(call.upstream);
    if (!target) throw new Error(`Unknown upstream "${call.upstream}"`);

    // Built from scratch: client headers (their relay key, cookies, ...) never reach a provider.
    const headers: Record<string, string> = {
      accept: 'application/json, text/event-stream',
      // The relay forwards bytes unchanged and reads SSE events from them, so no compression.
      'accept-encoding': 'identity',
      'x-request-id': call.requestId,
    };
    if (call.body !== undefined) headers['content-type'] = 'application/json';
    if (target.apiKey) headers.authorization = `Bearer ${target.apiKey}`;

    const handler = new CallHandler(call.cancellation);
    target.pool.dispatch(
      {
        method: call.method,
        path: target.basePath + call.path,
        headers,
        body: call.body === undefined ? undefined : JSON.stringify(call.body),
      },
      handler,
    );
    try {
      return await handler.head;
    } catch (err) {
      throw this.mapError(call, err);
    }
  }

  /** Messages name the upstream only: its URL may carry credentials and its key must never leak. */
  private mapError(call: UpstreamCall, err: unknown): unknown {
    if (call.cancellation.aborted) return err;
    const code = errorCode(err);
    if (code === 'UND_ERR_HEADERS_TIMEOUT') {
      return new UpstreamTimeoutError(`Upstream "${call.upstream}" did not answer in time`, err);
    }
    // A peer that does not speak HTTP: undici's parser error may carry no code at all.
    const notHttp = (err as Error | null)?.name === 'HTTPParserError';
    if (notHttp || (code && (UNREACHABLE_CODES.has(code) || UNREACHABLE_PREFIXES.test(code)))) {
      return new UpstreamUnavailableError(`Upstream "${call.upstream}" is unreachable`, err);
    }
    return err;
  }

  async close(): Promise<void> {
    await Promise.all([...this.targets.values()].map((t) => t.pool.close()));
  }
}
