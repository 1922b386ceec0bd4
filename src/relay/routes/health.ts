import { Router } from 'express';
import type { Services } from '../../services.js';

/** Liveness says the process serves HTTP; readiness says it can do its job (store reachable, not draining). */
export function healthRouter(s: Services, isDraining: () => boolean): Router {
  const r = Router();
  r.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  r.get('/readyz', async (_req, res) => {
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
  });
  return r;
}
