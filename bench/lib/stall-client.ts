// Child process of `npm run bench:stall`: builds the hostile bodies and sends requests when the
// bench asks (over IPC), so none of the client's work runs on the relay's measured event loop.
// argv: relay origin, body limit in bytes.
import { performance } from 'node:perf_hooks';
import { Agent, request } from 'undici';
import { CASES } from './stall-cases.js';

export interface SendOrder {
  seq: number;
  path: string;
  apiKey: string;
  /** A case id (body built here) or a literal body. */
  caseId?: string;
  body?: string;
}

export interface SendResult {
  seq: number;
  status: number;
  bytes: number;
  wallMs: number;
  /** Start of the response body (or the client error), for messages. 0 status: no response. */
  head: string;
}

const [origin, limit] = [process.argv[2]!, Number(process.argv[3])];
const bodies = new Map(CASES.map((c) => [c.id, c.body(limit)]));
const dispatcher = new Agent({ headersTimeout: 120_000, bodyTimeout: 120_000 });

process.on('message', async (o: SendOrder) => {
  const body = o.caseId === undefined ? o.body! : bodies.get(o.caseId)!;
  const result: SendResult = { seq: o.seq, status: 0, bytes: Buffer.byteLength(body), wallMs: 0, head: '' };
  const started = performance.now();
  try {
    const res = await request(`${origin}${o.path}`, {
      method: 'POST',
      dispatcher,
      headers: { 'content-type': 'application/json', authorization: `Bearer ${o.apiKey}` },
      body,
    });
    result.head = (await res.body.text()).slice(0, 300);
    result.status = res.statusCode;
  } catch (err) {
    result.head = err instanceof Error ? err.message : String(err);
  }
  result.wallMs = performance.now() - started;
  process.send!(result);
});
process.on('disconnect', () => process.exit(0));
process.send!({ ready: true });
