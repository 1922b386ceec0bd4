import type { RequestHandler } from 'express';
import type { Logger } from 'pino';

/** One line per request. Paths only (no query strings), never headers or bodies. */
export function accessLog(log: Logger): RequestHandler {
  return (req, res, next) => {
    if (!log.isLevelEnabled('info')) return next();
    const started = performance.now();
    res.on('close', () => {
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
