// Reads a /v1 request's JSON body with a size limit: every /v1 body is JSON, whatever its content
// type says. Bodies are read as they arrive and never decompressed: a compressed body (or one merely
// labelled so) must not be read as plain JSON, and inflating would let a small request become a huge one.
import type { IncomingMessage } from 'node:http';
import { AppError, InvalidRequestError } from '../../domain/errors.js';

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

/**
 * Whether JSON text nests objects/arrays deeper than `max`, scanned before parsing. Strings (most of
 * a prompt) are skipped with `indexOf`, so the scan costs little beyond the structure itself.
 */
export function nestsDeeperThan(text: string, max: number): boolean {
  if (text.length <= max) return false;
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 34) {
      i = stringEnd(text, i);
      if (i < 0) return false; // unterminated: JSON.parse refuses it
    } else if (c === 123 || c === 91) {
      if (++depth > max) return true;
    } else if (c === 125 || c === 93) depth--;
  }
  return false;
}

/** Index of the quote closing the string opened at `open`, or -1. */
function stringEnd(text: string, open: number): number {
  let at = text.indexOf('"', open + 1);
  while (at > 0) {
    let slashes = 0;
    while (text.charCodeAt(at - 1 - slashes) === 92) slashes++;
    if (slashes % 2 === 0) return at;
    at = text.indexOf('"', at + 1);
  }
  return -1;
}

const tooLarge = (limit: number) =>
  new AppError(`Request body too large: the limit is ${limit} bytes.`, {
    status: 413,
    type: 'invalid_request_error',
    code: 'request_too_large',
  });

const notJson = () =>
  new InvalidRequestError(
    'We could not parse the JSON body of your request. Send valid JSON with Content-Type: application/json.',
    null,
    'invalid_json',
  );

const unsupportedEncoding = () =>
  new AppError('Content-Encoding is not supported: send the JSON body uncompressed.', {
    status: 415,
    type: 'invalid_request_error',
    code: 'unsupported_content_encoding',
  });

const unreadable = (cause: unknown) =>
  new AppError('The request body could not be read: the connection failed before it was complete.', {
    status: 400,
    type: 'invalid_request_error',
    code: 'invalid_body',
    cause,
  });

const IDENTITY = /^\s*identity\s*$/i;

export interface JsonBody {
  /** The parsed body; undefined when it is empty. */
  value: unknown;
  bytes: number;
}

/** Reads and parses the body. A refused body is still drained, so the connection can answer. */
export function readJsonBody(req: IncomingMessage, limit: number): Promise<JsonBody> {
  return new Promise((resolve, reject) => {
    const encoding = req.headers['content-encoding'];
    if (encoding !== undefined && !IDENTITY.test(encoding)) {
      req.resume();
      return reject(unsupportedEncoding());
    }
    if (Number(req.headers['content-length']) > limit) {
      req.resume();
      return reject(tooLarge(limit));
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let failed = false;
    const fail = (err: unknown) => {
      failed = true;
      chunks.length = 0;
      reject(err);
    };
    req.on('data', (chunk: Buffer) => {
      if (failed) return;
      size += chunk.length;
      if (size > limit) return fail(tooLarge(limit));
      chunks.push(chunk);
    });
    req.on('end', () => {
      if (failed) return;
      if (size === 0) return resolve({ value: undefined, bytes: 0 });
      const text = (chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size)).toString('utf8');
      if (nestsDeeperThan(text, MAX_JSON_DEPTH)) return fail(tooDeep());
      try {
        resolve({ value: JSON.parse(text), bytes: size });
      } catch {
        fail(notJson());
      }
    });
    req.on('error', (err) => {
      if (!failed) fail(unreadable(err));
    });
  });
}
