import type { RequestHandler } from 'express';

/**
 * Lets browser apps call /v1 directly with a key, as they can with OpenAI's API. No cookies are
 * involved (auth is the bearer key), so any origin is safe to allow.
 */
export const cors: RequestHandler = (req, res, next) => {
  // Only browsers send Origin; server-side clients skip the header work.
  if (req.headers.origin === undefined) return next();
  res.setHeader('access-control-allow-origin', '*');
  res.setHeader(
    'access-control-expose-headers',
    'x-request-id, retry-after, x-ratelimit-limit-requests, x-ratelimit-remaining-requests, x-ratelimit-reset-requests, x-ratelimit-limit-tokens, x-ratelimit-remaining-tokens, x-ratelimit-reset-tokens',
  );
  if (req.method === 'OPTIONS') {
    res.setHeader('access-control-allow-methods', 'GET, POST, OPTIONS');
    res.setHeader(
      'access-control-allow-headers',
      req.headers['access-control-request-headers'] ?? 'authorization, content-type',
    );
    res.setHeader('access-control-max-age', '86400');
    res.status(204).end();
    return;
  }
  next();
};
