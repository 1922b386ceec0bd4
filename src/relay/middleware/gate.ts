// The cheap limits (requests per minute, concurrency) for relayed requests, checked before the body
// is read: a key over its limits never gets its body parsed or its prompt estimated.
import type { RequestHandler } from 'express';
import { enter, type Ticket } from '../../app/admission.js';
import type { Services } from '../../services.js';
import type { AuthContext } from './auth.js';

export function gate(s: Services): RequestHandler {
  return async (_req, res, next) => {
    const { key, tier } = res.locals.auth as AuthContext;
    let ticket: Ticket | undefined;
    let closed = false;
    // Whatever ends the response (answer, error, client gone), the slot is freed; settling the
    // request frees it earlier on the relayed path.
    res.once('close', () => {
      closed = true;
      void ticket?.release();
    });
    ticket = await enter(s.limits, { requestId: String(res.locals.requestId), key, tier });
    if (closed) {
      await ticket.release();
      return;
    }
    res.set(ticket.headers);
    res.locals.ticket = ticket;
    next();
  };
}
