// The cheap limits (requests per minute, concurrency) for relayed requests, checked before the body
// is read: a key over its limits never gets its body parsed or its prompt estimated.
import { enter, type Ticket } from '../../app/admission.js';
import type { Services } from '../../services.js';
import type { AuthContext, Exchange } from './exchange.js';

/** The request's ticket, or null when the client left while it was being taken (and it was freed). */
export async function takeTicket(s: Services, x: Exchange, auth: AuthContext): Promise<Ticket | null> {
  let ticket: Ticket | undefined;
  let closed = false;
  // Whatever ends the response (answer, error, client gone), the slot is freed; settling the
  // request frees it earlier on the relayed path.
  x.res.once('close', () => {
    closed = true;
    void ticket?.release();
  });
  ticket = await enter(s.limits, { requestId: x.requestId, key: auth.key, tier: auth.tier });
  if (closed) {
    await ticket.release();
    return null;
  }
  for (const name in ticket.headers) x.headers.push(name, ticket.headers[name]!);
  return ticket;
}
