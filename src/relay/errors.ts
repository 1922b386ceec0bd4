// The one place errors become HTTP responses, always in OpenAI's shape:
// { error: { message, type, param, code } }. Unknown errors are a generic 500 naming the request id.
import type { ErrorRequestHandler, Response } from 'express';
import { AppError, type OpenAIErrorType } from '../domain/errors.js';

export interface ErrorBody {
  error: { message: string; type: OpenAIErrorType | string; param: string | null; code: string | null };
}

export function errorBody(message: string, type: string, code: string | null, param: string | null = null): ErrorBody {
  return { error: { message, type, param, code } };
}

/**
 * The relay's own refusals: client errors (auth, limits, budget, invalid input) and the 503s it
 * decides on (limiter or store unavailable, shutting down). Upstream failures (502/504) are not.
 */
function isRefusal(status: number): boolean {
  return status < 500 || status === 503;
}

export function sendError(res: Response, err: AppError): void {
  // Counted by the access log when the response closes (metrics: refusals by reason).
  if (isRefusal(err.status)) res.locals.refusal = err.code;
  res
    .set(err.headers)
    .status(err.status)
    .json(errorBody(err.message, err.type, err.code, err.param));
}

export function errorMapper(log: { error(obj: object, msg: string): void }): ErrorRequestHandler {
  return (err, _req, res, _next) => {
    if (res.headersSent) {
      res.destroy();
      return;
    }
    if (err instanceof AppError) return sendError(res, err);
    const clientError = asClientError(err);
    if (clientError) return sendError(res, clientError);
    const requestId = String(res.locals.requestId ?? 'unknown');
    log.error({ err, requestId }, 'unhandled error');
    res
      .status(500)
      .json(
        errorBody(
          `The server had an error while processing your request. Request id: ${requestId}.`,
          'api_error',
          'internal_error',
        ),
      );
  };
}

/**
 * Errors express itself raises for a bad request (a path with malformed percent-encoding is a
 * URIError, or an error carrying a 4xx `status`): the client's fault, so a 4xx, never a 500.
 */
function asClientError(err: unknown): AppError | null {
  if (err instanceof URIError) {
    return new AppError('The request URL is not valid: it has malformed percent-encoding.', {
      status: 400,
      type: 'invalid_request_error',
      code: 'invalid_url',
    });
  }
  const status = (err as { status?: unknown } | null)?.status;
  if (typeof status === 'number' && status >= 400 && status < 500) {
    return new AppError('The request is not valid.', {
      status,
      type: 'invalid_request_error',
      code: 'invalid_request',
    });
  }
  return null;
}
