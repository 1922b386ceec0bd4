// The /v1 API on plain node:http. Express is kept for everything else the relay serves (health,
// metrics, the web pages): merely giving a request Express's request/response prototypes cost more
// CPU than a whole bare forwarder spends per request (bench/README.md, "Why /v1 bypasses Express").
// Steps, in order: request id, drain check, CORS, key, route; relayed routes then pass the local
// gate (requests/minute, concurrency) before their body is read.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { AppError, NotFoundError, ServiceUnavailableError } from '../../domain/errors.js';
import { newId } from '../../domain/ids.js';
import type { Services } from '../../services.js';
import { errorBody } from '../errors.js';
import { chatCompletions } from '../routes/chat-completions.js';
import { completions } from '../routes/completions.js';
import { embeddings } from '../routes/embeddings.js';
import { listModels, retrieveModel } from '../routes/models.js';
import { authenticator } from './auth.js';
import { readJsonBody } from './body.js';
import { cors } from './cors.js';
import type { Exchange } from './exchange.js';
import { passGate } from './gate.js';
import { writeError, writeJson } from './respond.js';

export interface ApiOptions {
  isDraining: () => boolean;
}

/** Whether a request URL belongs to the API (everything under /v1). */
export function isApiUrl(url: string): boolean {
  return url.startsWith('/v1') && (url.length === 3 || url[3] === '/' || url[3] === '?');
}

const MODELS = '/v1/models';

export function createApiHandler(s: Services, opts: ApiOptions): (req: IncomingMessage, res: ServerResponse) => void {
  const authenticate = authenticator(s);
  const bodyLimit = s.config.server.bodyLimitBytes;
  const relayed = new Map([
    ['/v1/chat/completions', chatCompletions(s)],
    ['/v1/completions', completions(s)],
    ['/v1/embeddings', embeddings(s)],
  ]);
  const list = listModels(s);
  const retrieve = retrieveModel(s);

  async function handle(x: Exchange): Promise<void> {
    const { req } = x;
    if (opts.isDraining()) {
      // Shutting down: refuse new work on connections that are still open, and close them.
      x.headers.push('connection', 'close');
      throw new ServiceUnavailableError('This relay instance is shutting down. Retry the request.', 'shutting_down');
    }
    if (cors(x)) return;
    // Auth first: an unauthenticated client learns nothing, not even which URLs exist.
    const auth = await authenticate(x);
    x.auth = auth;
    const { path } = x;
    const method = req.method;
    if (method === 'POST') {
      const route = relayed.get(path);
      if (route) {
        x.pass = passGate(s, x, auth);
        const body = await readJsonBody(req, bodyLimit);
        x.bodyBytes = body.bytes;
        return route(x, body.value);
      }
    } else if (method === 'GET' || method === 'HEAD') {
      if (path === MODELS) return list(x);
      // Model ids may contain slashes (`org/model`): the rest of the path is the id.
      if (path.startsWith(`${MODELS}/`)) return retrieve(x, decodePath(path.slice(MODELS.length + 1)));
    }
    throw new NotFoundError(`Unknown request URL: ${method} ${path}.`, 'unknown_url');
  }

  return (req, res) => {
    const requestId = newId('req');
    const url = req.url ?? '/';
    const x: Exchange = { req, res, requestId, path: pathOf(url), headers: ['x-request-id', requestId] };
    observe(s, x);
    handle(x).catch((err) => fail(s, x, err));
  };
}

/** The URL's path without its query string or a trailing slash (`/v1/models/` is `/v1/models`). */
function pathOf(url: string): string {
  const q = url.indexOf('?');
  const path = q < 0 ? url : url.slice(0, q);
  return path.length > 1 && path.endsWith('/') ? path.slice(0, -1) : path;
}

function decodePath(raw: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    throw new AppError('The request URL is not valid: it has malformed percent-encoding.', {
      status: 400,
      type: 'invalid_request_error',
      code: 'invalid_url',
    });
  }
}

/**
 * The relay's own refusals: client errors (auth, limits, budget, invalid input) and the 503s it
 * decides on (limiter or store unavailable, shutting down). Upstream failures (502/504) are not.
 */
const isRefusal = (status: number) => status < 500 || status === 503;

function fail(s: Services, x: Exchange, err: unknown): void {
  const { res } = x;
  if (res.headersSent || res.destroyed) {
    res.destroy();
    return;
  }
  if (err instanceof AppError) {
    if (isRefusal(err.status)) x.refusal = err.code;
    writeError(x, err);
    return;
  }
  s.log.error({ err, requestId: x.requestId }, 'unhandled error');
  writeJson(
    x,
    500,
    errorBody(
      `The server had an error while processing your request. Request id: ${x.requestId}.`,
      'api_error',
      'internal_error',
    ),
  );
}

/** One access-log line per request (paths only: no query strings, headers or bodies) and its metrics. */
function observe(s: Services, x: Exchange): void {
  const logging = s.log.isLevelEnabled('info');
  const started = logging ? performance.now() : 0;
  x.res.once('close', () => {
    s.metrics.response(x.path, x.res.statusCode);
    if (x.refusal !== undefined) s.metrics.refusal(x.refusal);
    if (!logging) return;
    s.log.info(
      {
        requestId: x.requestId,
        method: x.req.method,
        path: x.path,
        status: x.res.statusCode,
        ms: Math.round(performance.now() - started),
        keyId: x.auth?.key.id,
        aborted: !x.res.writableFinished || undefined,
      },
      'request',
    );
  });
}
