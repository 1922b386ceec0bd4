// Lets browser apps call /v1 directly with a key, as they can with OpenAI's API. No cookies are
// involved (auth is the bearer key), so any origin is safe to allow.
import type { IncomingMessage, ServerResponse } from 'node:http';

const EXPOSED =
  'x-request-id, retry-after, x-ratelimit-limit-requests, x-ratelimit-remaining-requests, x-ratelimit-reset-requests, x-ratelimit-limit-tokens, x-ratelimit-remaining-tokens, x-ratelimit-reset-tokens';

/** Adds the CORS headers for a browser's request; true when it was a preflight, answered here. */
export function cors(req: IncomingMessage, res: ServerResponse): boolean {
  // Only browsers send Origin; server-side clients skip the header work.
  if (req.headers.origin === undefined) return false;
  res.setHeader('access-control-allow-origin', '*');
  res.setHeader('access-control-expose-headers', EXPOSED);
  if (req.method !== 'OPTIONS') return false;
  res.setHeader('access-control-allow-methods', 'GET, POST, OPTIONS');
  res.setHeader(
    'access-control-allow-headers',
    req.headers['access-control-request-headers'] ?? 'authorization, content-type',
  );
  res.setHeader('access-control-max-age', '86400');
  res.statusCode = 204;
  res.end();
  return true;
}
