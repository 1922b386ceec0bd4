// The local gate for relayed requests, passed before the body is read: a key known to be over its
// requests per minute, or with as many requests in flight here as its tier allows, is refused
// without its body parsed or its prompt estimated (src/app/local-gate.ts).
import type { GatePass } from '../../app/local-gate.js';
import type { Services } from '../../services.js';
import type { AuthContext, Exchange } from './exchange.js';

/** The request's place at the gate, freed whatever ends the response (answer, error, client gone). */
export function passGate(s: Services, x: Exchange, auth: AuthContext): GatePass {
  const pass = s.gate.enter(auth.key.id, auth.tier);
  x.res.once('close', pass.leave);
  return pass;
}
