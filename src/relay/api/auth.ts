// Bearer-key authentication for /v1. Unknown, revoked, suspended, expired and malformed keys all get
// the same 401, so a response never tells whether a key exists. Failed attempts are limited per
// client IP; a valid key is always admitted, whatever its address did.
import { AuthThrottle } from '../../app/auth-throttle.js';
import { AuthenticationError, RateLimitError, ServiceUnavailableError } from '../../domain/errors.js';
import type { Services } from '../../services.js';
import { clientIp } from './client-ip.js';
import type { AuthContext, Exchange } from './exchange.js';

const BEARER = /^Bearer\s+(\S+)\s*$/i;

export function authenticator(s: Services): (x: Exchange) => Promise<AuthContext> {
  const { tiers, defaultTier, limits, server } = s.config;
  const throttle = new AuthThrottle(s.authFailures, limits.authFailuresPerMinute);
  // Only failures need the address, so it is computed only for them.
  const ipOf = clientIp(server.trustProxy);

  /** Counts the failure, then refuses with 401, or 429 once the address is over its limit. */
  const refuse = async (x: Exchange, message?: string): Promise<never> => {
    const waitMs = await throttle.fail(ipOf(x.req) || 'unknown');
    if (waitMs > 0) throw tooManyFailures(waitMs / 1000);
    throw new AuthenticationError(message);
  };

  return async (x) => {
    const match = BEARER.exec(x.req.headers.authorization ?? '');
    if (!match) {
      return refuse(
        x,
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
    if (!result.ok) return refuse(x);
    const key = result.key;
    let tier = Object.hasOwn(tiers, key.tier) ? tiers[key.tier] : undefined;
    if (!tier) {
      s.log.warn({ keyId: key.id, tier: key.tier }, 'key has a tier that is no longer configured; using the default');
      tier = tiers[defaultTier]!;
    }
    return { key, tier };
  };
}

function tooManyFailures(retryAfterSeconds: number): RateLimitError {
  return new RateLimitError(
    'Too many failed authentication attempts from your address. Wait before trying again.',
    'auth_failures',
    retryAfterSeconds,
  );
}
