// Bearer-key authentication for /v1. Unknown, revoked, suspended and expired keys all get the same
// 401, so a response never tells whether a key exists. Failed attempts are limited per client IP.
import type { RequestHandler } from 'express';
import type { TierConfig } from '../../config/schema.js';
import { AuthenticationError, RateLimitError } from '../../domain/errors.js';
import type { KeyRecord } from '../../domain/types.js';
import type { Services } from '../../services.js';

const BEARER = /^Bearer\s+(\S+)\s*$/i;

export interface AuthContext {
  key: KeyRecord;
  tier: TierConfig;
}

export function authenticate(s: Services): RequestHandler {
  const { tiers, defaultTier, limits } = s.config;
  /** Local memo of IPs the shared limiter refused, so they skip key lookups until the window ends. */
  const blocked = new Map<string, number>();

  return async (req, res, next) => {
    // Resolving the client address (trust proxy rules) is only worth it once some address failed.
    if (blocked.size > 0) {
      const ip = req.ip ?? 'unknown';
      const until = blocked.get(ip);
      if (until !== undefined) {
        if (until > Date.now()) throw tooManyFailures((until - Date.now()) / 1000);
        blocked.delete(ip);
      }
    }
    const match = BEARER.exec(req.headers.authorization ?? '');
    if (!match) {
      throw new AuthenticationError(
        "You didn't provide an API key. Send it in the Authorization header as 'Bearer gg_...'. Get a key from your Discord server.",
      );
    }
    const result = await s.verifier.verify(match[1]!);
    if (!result.ok) {
      const ip = req.ip ?? 'unknown';
      const d = await s.authFailures.consume(`ip:${ip}`, limits.authFailuresPerMinute);
      if (!d.allowed) {
        blocked.set(ip, Date.now() + d.resetMs);
        throw tooManyFailures(d.resetMs / 1000);
      }
      throw new AuthenticationError();
    }
    const key = result.key;
    let tier = tiers[key.tier];
    if (!tier) {
      s.log.warn({ keyId: key.id, tier: key.tier }, 'key has a tier that is no longer configured; using the default');
      tier = tiers[defaultTier]!;
    }
    res.locals.auth = { key, tier } satisfies AuthContext;
    next();
  };
}

function tooManyFailures(retryAfterSeconds: number): RateLimitError {
  return new RateLimitError(
    'Too many failed authentication attempts from your address. Wait before trying again.',
    'auth_failures',
    retryAfterSeconds,
  );
}
