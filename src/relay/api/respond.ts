// Writing answers on node's ServerResponse: one header block and one body write per answer, the
// exchange's headers (request id, rate limits, CORS) first.
import type { AppError } from '../../domain/errors.js';
import { errorBody } from '../errors.js';
import type { Exchange } from './exchange.js';

/** Sends the head: the exchange's headers, then `extra` (flat pairs, names the exchange's do not have). */
export function writeHead(x: Exchange, status: number, extra: string[]): void {
  x.res.writeHead(status, x.headers.length ? [...x.headers, ...extra] : extra);
}

export function writeJson(x: Exchange, status: number, value: unknown, headers?: Record<string, string>): void {
  const body = JSON.stringify(value);
  const extra: string[] = [];
  if (headers) {
    for (const name in headers) extra.push(name, headers[name]!);
    dropNames(x.headers, headers);
  }
  extra.push('content-type', 'application/json; charset=utf-8', 'content-length', String(Buffer.byteLength(body)));
  writeHead(x, status, extra);
  x.res.end(body);
}

/** An error in OpenAI's shape, with the headers it carries (retry-after, rate-limit state). */
export function writeError(x: Exchange, err: AppError): void {
  writeJson(x, err.status, errorBody(err.message, err.type, err.code, err.param), err.headers);
}

/** Removes from `pairs` the headers `headers` sets again (names are lower case on both sides). */
function dropNames(pairs: string[], headers: Record<string, string>): void {
  for (let i = pairs.length - 2; i >= 0; i -= 2) if (Object.hasOwn(headers, pairs[i]!)) pairs.splice(i, 2);
}
