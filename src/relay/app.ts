// The HTTP face for API clients: `createRelayApp(services)` returns an express app without
// listening, so tests and the process entry mount it the same way.
import express, { type Express, type RequestHandler } from 'express';
import { NotFoundError, ServiceUnavailableError } from '../domain/errors.js';
import { metricsRoute } from '../observability/endpoint.js';
import type { Services } from '../services.js';
import { errorMapper, sendError } from './errors.js';
import { accessLog } from './middleware/access-log.js';
import { authenticate } from './middleware/auth.js';
import { cors } from './middleware/cors.js';
import { gate } from './middleware/gate.js';
import { jsonBody } from './middleware/json-body.js';
import { requestId } from './middleware/request-id.js';
import { chatCompletions } from './routes/chat-completions.js';
import { completions } from './routes/completions.js';
import { embeddings } from './routes/embeddings.js';
import { healthz, readyz } from './routes/health.js';
import { listModels, retrieveModel } from './routes/models.js';

export interface RelayAppOptions {
  isDraining?: () => boolean;
  /** Pages served beside the API (the web sign-in and dashboard); they answer every path outside /v1. */
  web?: RequestHandler;
}

export function createRelayApp(s: Services, opts: RelayAppOptions = {}): Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('trust proxy', s.config.server.trustProxy);
  app.set('etag', false);
  app.use(requestId);
  app.use(accessLog(s.log, s.metrics));
  const isDraining = opts.isDraining ?? (() => false);
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

  const v1 = express.Router();
  v1.use(cors);
  // Auth first: an unauthenticated client learns nothing, not even body size limits.
  v1.use(authenticate(s));
  v1.get('/models', listModels(s));
  // Model ids may contain slashes (`org/model`), so match the rest of the path.
  v1.get('/models/*id', retrieveModel(s));
  // Requests per minute and concurrency come before the body is read, let alone estimated.
  const body = jsonBody(s.config.server.bodyLimitBytes);
  v1.post('/chat/completions', gate(s), body, chatCompletions(s));
  v1.post('/completions', gate(s), body, completions(s));
  v1.post('/embeddings', gate(s), body, embeddings(s));
  v1.use((req) => {
    throw new NotFoundError(`Unknown request URL: ${req.method} /v1${req.path}.`, 'unknown_url');
  });
  app.use('/v1', v1);
  if (opts.web) app.use(opts.web);
  app.use((req) => {
    throw new NotFoundError(`Unknown request URL: ${req.method} ${req.path}.`, 'unknown_url');
  });
  app.use(errorMapper(s.log));
  return app;
}
