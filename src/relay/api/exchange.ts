// One /v1 request as the API pipeline sees it: node's own request and response (no framework
// objects), and what each step learned about it so far.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { GatePass } from '../../app/local-gate.js';
import type { TierConfig } from '../../config/schema.js';
import type { KeyRecord } from '../../domain/types.js';

export interface AuthContext {
  key: KeyRecord;
  tier: TierConfig;
}

export interface Exchange {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly requestId: string;
  /** The URL path, without its query string or a trailing slash. */
  readonly path: string;
  /**
   * Response headers so far, as flat name/value pairs, written with the status in one `writeHead`
   * (`respond.ts`): cheaper than `setHeader` for each, which is most of a response's header cost.
   */
  readonly headers: string[];
  /** Set once the key is verified. */
  auth?: AuthContext;
  /** Set once a relayed request passed the local gate, before its body is read. */
  pass?: GatePass;
  /** Size of the request body, once read. */
  bodyBytes?: number;
  /** The OpenAI error code of a refusal the relay sent itself (for metrics). */
  refusal?: string;
}
