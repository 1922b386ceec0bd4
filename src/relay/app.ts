// The relay's HTTP face: `createRelayListener(services)` returns the node:http request listener
// without listening, so tests and the process entry mount it the same way. The API (/v1) runs on
// its own lean pipeline (src/relay/api); Express serves the rest: health, metrics, the web pages.
import type { IncomingMessage, ServerResponse } from 'node:http';
import express, { type RequestHandler } from 'express';
import { NotFoundError, ServiceUnavailableError } from '../domain/errors.js';
import { metricsRoute } from '../observability/endpoint.js';
import type { Services } from '../services.js';
import { createApiHandler, isApiUrl } from './api/handler.js';
import { errorMapper, sendError } from './errors.js';
import { accessLog } from './middleware/access-log.js';
import { requestId } from './middleware/request-id.js';
import { healthz, readyz } from './routes/health.js';

export interface RelayAppOptions {
  isDraining?: () => boolean;
  /** Pages served beside the API (the web sign-in and dashboard); they answer every path outside /v1. */
  web?: RequestHandler;
}

export type RequestListener = (req: IncomingMessage, res: ServerResponse) => void;

export function createRelayListener(s: Services, opts: RelayAppOptions = {}): RequestListener {
  const isDraining = opts.isDraining ?? (() => false);
  const api = createApiHandler(s, { isDraining });
  const app = express();
  app.disable('x-powered-by');
  app.set('trust proxy', s.config.server.trustProxy);
  app.set('etag', false);
  app.use(requestId);
  app.use(accessLog(s.log, s.metrics));
  app.get('/healthz', healthz);
  app.get('/readyz', readyz(s, isDraining));
  // Only behind its token; without one, /metrics is served on `metrics.listen` or not at all.
  if (s.config.env.metricsToken) app.get('/metrics', metricsRoute(s.metrics, s.config.env.metricsToken));
  app.use((_req, res, next) => {
    if (!isDraining()) return next();
    // Shutting down: refuse new work on connections that are still open, and close them.
    res.set('connection', 'close');
    sendError(
      res,
      new ServiceUnavailableError('This relay instance is shutting down. Retry the request.', 'shutting_down'),
    );
  });
  if (opts.web) app.use(opts.web);
  app.use((req) => {
    throw new NotFoundError(`Unknown request URL: ${req.method} ${req.path}.`, 'unknown_url');
  });
  app.use(errorMapper(s.log));
  return (req, res) => (isApiUrl(req.url ?? '/') ? api(req, res) : app(req, res));
}
