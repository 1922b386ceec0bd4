// Typed errors. Expected refusals carry the HTTP status and OpenAI error type they map to, so one
// mapper in the relay writes every error body. Infrastructure faults keep their cause.

export type OpenAIErrorType =
  | 'invalid_request_error'
  | 'authentication_error'
  | 'permission_error'
  | 'not_found_error'
  | 'rate_limit_error'
  | 'insufficient_quota'
  | 'api_error'
  | 'service_unavailable';

export class AppError extends Error {
  readonly status: number;
  readonly type: OpenAIErrorType;
  readonly code: string;
  readonly param: string | null;
  readonly retryable: boolean;
  /** Extra response headers (e.g. retry-after). */
  readonly headers: Record<string, string>;

  constructor(
    message: string,
    opts: {
      status: number;
      type: OpenAIErrorType;
      code: string;
      param?: string | null;
      retryable?: boolean;
      headers?: Record<string, string>;
      cause?: unknown;
    },
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = new.target.name;
    this.status = opts.status;
    this.type = opts.type;
    this.code = opts.code;
    this.param = opts.param ?? null;
    this.retryable = opts.retryable ?? false;
    this.headers = opts.headers ?? {};
  }
}

export class InvalidRequestError extends AppError {
  constructor(message: string, param: string | null = null, code = 'invalid_request') {
    super(message, { status: 400, type: 'invalid_request_error', code, param });
  }
}

export class NotFoundError extends AppError {
  constructor(message: string, code = 'not_found', param: string | null = null) {
    super(message, { status: 404, type: 'invalid_request_error', code, param });
  }
}

/** Missing, malformed, unknown, revoked, suspended or expired key: one answer for all. */
export class AuthenticationError extends AppError {
  constructor(message = 'Incorrect API key provided. Check the key, or get a new one from your Discord server.') {
    super(message, {
      status: 401,
      type: 'invalid_request_error',
      code: 'invalid_api_key',
    });
  }
}

export class PermissionError extends AppError {
  constructor(message: string, code = 'model_not_allowed', param: string | null = null) {
    super(message, { status: 403, type: 'invalid_request_error', code, param });
  }
}

export type LimitKind = 'requests' | 'concurrency' | 'tokens' | 'auth_failures';

export class RateLimitError extends AppError {
  readonly limit: LimitKind;
  constructor(message: string, limit: LimitKind, retryAfterSeconds: number, headers: Record<string, string> = {}) {
    const code = limit === 'tokens' ? 'daily_token_budget_exceeded' : `rate_limit_${limit}`;
    super(message, {
      status: 429,
      type: limit === 'tokens' ? 'insufficient_quota' : 'rate_limit_error',
      code,
      retryable: true,
      headers: { ...headers, 'retry-after': String(Math.max(1, Math.ceil(retryAfterSeconds))) },
    });
    this.limit = limit;
  }
}

export class UpstreamUnavailableError extends AppError {
  constructor(message: string, cause?: unknown) {
    super(message, { status: 502, type: 'api_error', code: 'upstream_unavailable', retryable: true, cause });
  }
}

export class UpstreamTimeoutError extends AppError {
  constructor(message: string, cause?: unknown) {
    super(message, { status: 504, type: 'api_error', code: 'upstream_timeout', retryable: true, cause });
  }
}

/** A backing service (store, Redis) failed and the configured policy is to refuse. */
export class ServiceUnavailableError extends AppError {
  constructor(message: string, code = 'service_unavailable', cause?: unknown) {
    super(message, { status: 503, type: 'service_unavailable', code, retryable: true, cause });
  }
}

/** Store-level: the owner already has a live key (one live key per Discord user). */
export class LiveKeyExistsError extends Error {
  constructor(readonly discordId: string) {
    super(`Discord user ${discordId} already has a live key`);
    this.name = 'LiveKeyExistsError';
  }
}
