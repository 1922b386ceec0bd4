// Reads a JSON request body with a size limit. Does the little express.json did for us here
// (every /v1 body is JSON, whatever its content type says) at a fraction of its per-request cost,
// which showed in profiles of the relay's hot path.
import type { RequestHandler } from 'express';
import { AppError, InvalidRequestError } from '../../domain/errors.js';

function tooLarge(limit: number): AppError {
  return new AppError(`Request body too large: the limit is ${limit} bytes.`, {
    status: 413,
    type: 'invalid_request_error',
    code: 'request_too_large',
  });
}

const notJson = () =>
  new InvalidRequestError(
    'We could not parse the JSON body of your request. Send valid JSON with Content-Type: application/json.',
    null,
    'invalid_json',
  );

// Bodies are read as they arrive, never decompressed: a compressed body (or one merely labelled
// so) must not be read as plain JSON, and inflating would let a small request become a huge one.
const unsupportedEncoding = () =>
  new AppError('Content-Encoding is not supported: send the JSON body uncompressed.', {
    status: 415,
    type: 'invalid_request_error',
    code: 'unsupported_content_encoding',
  });

// The client aborted, timed out (Node answers 408 itself) or sent malformed chunks: its fault, not an
// error of ours to log; whatever we answer goes nowhere or is refused by the closed socket.
const unreadable = (cause: unknown) =>
  new AppError('The request body could not be read: the connection failed before it was complete.', {
    status: 400,
    type: 'invalid_request_error',
    code: 'invalid_body',
    cause,
  });

const IDENTITY = /^\s*identity\s*$/i;

/**
 * Deepest nesting of objects and arrays accepted. Real requests (tool schemas included) stay far
 * below; a deeper body would only overflow the stack of whatever walks it later.
 */
export const MAX_JSON_DEPTH = 128;

const tooDeep = () =>
  new InvalidRequestError(
    `The JSON body is nested too deeply: at most ${MAX_JSON_DEPTH} levels of objects and arrays.`,
    null,
    'invalid_json',
  );

/** Whether JSON text nests objects/arrays deeper than `max`, scanned before parsing (strings skipped). */
export function nestsDeeperThan(text: string, max: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 92)
        i++; // backslash: skip the escaped character
      else if (c === 34) inString = false;
    } else if (c === 34) inString = true;
    else if (c === 123 || c === 91) {
      if (++depth > max) return true;
    } else if (c === 125 || c === 93) depth--;
  }
  return false;
}

export function jsonBody(limit: number): RequestHandler {
  return (req, _res, next) => {
    if (req.method === 'GET' || req.method === 'HEAD') return next();
    const encoding = req.headers['content-encoding'];
    if (encoding !== undefined && !IDENTITY.test(encoding)) {
      req.resume();
      return next(unsupportedEncoding());
    }
    const declared = Number(req.headers['content-length']);
    if (declared > limit) {
      // Drain without keeping it, so the connection can answer.
      req.resume();
      return next(tooLarge(limit));
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let failed = false;
    req.on('data', (chunk: Buffer) => {
      if (failed) return;
      size += chunk.length;
      if (size > limit) {
        failed = true;
        chunks.length = 0;
        next(tooLarge(limit));
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => {
      if (failed) return;
      if (size === 0) return next();
      const text = Buffer.concat(chunks, size).toString('utf8');
      if (nestsDeeperThan(text, MAX_JSON_DEPTH)) return next(tooDeep());
      try {
        req.body = JSON.parse(text);
      } catch {
        return next(notJson());
      }
      next();
    });
    req.on('error', (err) => {
      if (!failed) {
        failed = true;
        next(unreadable(err));
      }
    });
  };
}
