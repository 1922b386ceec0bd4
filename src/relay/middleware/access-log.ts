import type { RequestHandler } from 'express';
import type { Logger } from 'pino';
import type { Metrics } from '../../observability/types.js';

/**
 * One line per request. Paths only (no query strings), never headers or bodies. Also where every
 * response is counted for metrics (route and status; the refusal code `sendError` left in
 * `res.locals.refusal`), since it sees each one close.
 */
export function accessLog(log: Logger, metrics: Pick<Metrics, 'response' | 'refusal'>): RequestHandler {
  return (req, res, next) => {
    const logging = log.isLevelEnabled('info');
    // The full path now: routers strip their mount path from `req.path` while they run.
    const path = req.path;
    const started = logging ? performance.now() : 0;
    res.on('close', () => {
      metrics.response(path, res.statusCode);
      const refusal = res.locals.refusal as string | undefined;
      if (refusal !== undefined) metrics.refusal(refusal);
      if (!logging) return;
      log.info(
        {
          requestId: res.locals.requestId,
          method: req.method,
          path: req.path,
          status: res.statusCode,
          ms: Math.round(performance.now() - started),
          keyId: res.locals.auth?.key.id,
          aborted: !res.writableFinished || undefined,
        },
        'request',
      );
    });
    next();
  };
}
