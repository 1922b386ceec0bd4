// Bearer-key authentication for /v1. Unknown, revoked, suspended and expired keys all get the same
// 401, so a response never tells whether a key exists. Failed attempts are limited per client IP.
import type { RequestHandler } from 'express';
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
    let result: Awaited<ReturnType<typeof s.verifier.verify>>;
    try {
      result = await s.verifier.verify(match[1]!);
    } catch (err) {
      throw new ServiceUnavailableError('The key store is not answering. Try again shortly.', 'store_unavailable', err);
    }
    if (!result.ok) {
      const ip = req.ip ?? 'unknown';
      const d = await s.authFailures.consume(`ip:${ip}`, limits.authFailuresPerMinute);
      if (!d.allowed) {
        if (blocked.size >= MAX_BLOCKED) sweep(blocked);
        blocked.set(ip, Date.now() + d.resetMs);
        throw tooManyFailures(d.resetMs / 1000);
      }
      throw new AuthenticationError();
    }
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

const MAX_BLOCKED = 10_000;

/** Drops expired blocks; if all are live, the oldest half (an attack from many addresses). */
function sweep(blocked: Map<string, number>): void {
  const now = Date.now();
  for (const [ip, until] of blocked) if (until <= now) blocked.delete(ip);
  if (blocked.size < MAX_BLOCKED) return;
  let drop = blocked.size / 2;
  for (const ip of blocked.keys()) {
    if (drop-- <= 0) break;
    blocked.delete(ip);
  }
}

function tooManyFailures(retryAfterSeconds: number): RateLimitError {
  return new RateLimitError(
    'Too many failed authentication attempts from your address. Wait before trying again.',
    'auth_failures',
    retryAfterSeconds,
  );
}
