import type { RequestHandler } from 'express';
import type { Services } from '../../services.js';

/** Liveness: the process serves HTTP. */
export const healthz: RequestHandler = (_req, res) => {
  res.json({ status: 'ok' });
};

/** Readiness: the store answers and the process is not draining. */
export function readyz(s: Services, isDraining: () => boolean): RequestHandler {
  return async (_req, res) => {
    if (isDraining()) {
      res.status(503).json({ status: 'draining' });
      return;
    }
    try {
      await s.store.ping();
      res.json({ status: 'ready', backends: s.backends });
    } catch {
      res.status(503).json({ status: 'unavailable', reason: 'store unreachable' });
    }
  };
}
