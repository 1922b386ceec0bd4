// Lets browser apps call /v1 directly with a key, as they can with OpenAI's API. No cookies are
// involved (auth is the bearer key), so any origin is safe to allow.
import type { Exchange } from './exchange.js';

const EXPOSED =
  'x-request-id, retry-after, x-ratelimit-limit-requests, x-ratelimit-remaining-requests, x-ratelimit-reset-requests, x-ratelimit-limit-tokens, x-ratelimit-remaining-tokens, x-ratelimit-reset-tokens';

/** Adds the CORS headers for a browser's request; true when it was a preflight, answered here. */
export function cors(x: Exchange): boolean {
  const { req, res } = x;
  // Only browsers send Origin; server-side clients skip the header work.
  if (req.headers.origin === undefined) return false;
  x.headers.push('access-control-allow-origin', '*', 'access-control-expose-headers', EXPOSED);
  if (req.method !== 'OPTIONS') return false;
  x.headers.push(
    'access-control-allow-methods',
    'GET, POST, OPTIONS',
    'access-control-allow-headers',
    req.headers['access-control-request-headers'] ?? 'authorization, content-type',
    'access-control-max-age',
    '86400',
  );
  res.writeHead(204, x.headers).end();
  return true;
}
