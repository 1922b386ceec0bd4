// Writing answers on node's ServerResponse: one header block and one body write per answer.
import type { ServerResponse } from 'node:http';
import type { AppError } from '../../domain/errors.js';
import { errorBody } from '../errors.js';

export function writeJson(res: ServerResponse, status: number, value: unknown, headers?: Record<string, string>): void {
  const body = JSON.stringify(value);
  res.statusCode = status;
  if (headers) for (const name in headers) res.setHeader(name, headers[name]!);
  res.setHeader('content-type', 'application/json; charset=utf-8');
  res.setHeader('content-length', Buffer.byteLength(body));
  res.end(body);
}

/** An error in OpenAI's shape, with the headers it carries (retry-after, rate-limit state). */
export function writeError(res: ServerResponse, err: AppError): void {
  writeJson(res, err.status, errorBody(err.message, err.type, err.code, err.param), err.headers);
}
