// Bearer-key authentication for /v1. Unknown, revoked, suspended, expired and malformed keys all get
// the same 401, so a response never tells whether a key exists. Failed attempts are limited per
// client IP; a valid key is always admitted, whatever its address did.
import type { RequestHandler } from 'express';
import { AuthThrottle } from '../../app/auth-throttle.js';
import type { TierConfig } from '../../config/schema.js';
import { AuthenticationError, RateLimitError, ServiceUnavailableError } from '../../domain/errors.js';
import type { KeyRecord } from '../../domain/types.js';
import type { Services } from '../../services.js';

const BEARER = /^Bearer\s+(\S+)\s*$/i;

export interface AuthContext {
  key: KeyRecord;
  tier: TierConfig;
}

export function authenticate(s: Services): RequestHandler {
  const { tiers, defaultTier, limits } = s.config;
  const throttle = new AuthThrottle(s.authFailures, limits.authFailuresPerMinute);

  /** Counts the failure, then refuses with 401, or 429 once the address is over its limit. */
  const refuse = async (ip: string | undefined, message?: string): Promise<never> => {
    const waitMs = await throttle.fail(ip ?? 'unknown');
    if (waitMs > 0) throw tooManyFailures(waitMs / 1000);
    throw new AuthenticationError(message);
  };

  return async (req, res, next) => {
    const match = BEARER.exec(req.headers.authorization ?? '');
    if (!match) {
      return refuse(
        req.ip,
        "You didn't provide an API key. Send it in the Authorization header as 'Bearer gg_...'. Get a key from your Discord server.",
      );
    }
    // Verified even when the address is blocked: its failures must not lock out a valid key.
    let result: Awaited<ReturnType<typeof s.verifier.verify>>;
    try {
      result = await s.verifier.verify(match[1]!);
    } catch (err) {
      throw new ServiceUnavailableError('The key store is not answering. Try again shortly.', 'store_unavailable', err);
    }
    if (!result.ok) return refuse(req.ip);
    const key = result.key;
    let tier = Object.hasOwn(tiers, key.tier) ? tiers[key.tier] : undefined;
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
