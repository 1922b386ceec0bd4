// Cross-site request forgery defence for every POST: the request must come from our own origin when
// the browser says where it came from (Origin), and it must carry the session's synchronizer token
// (hidden `_csrf` field or `x-csrf-token` header). Sessions cookies are also SameSite=Lax.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Request, RequestHandler } from 'express';
import { PageError } from './respond.js';

/** The session's token, created on first use (by the first page that renders a form). */
export function csrfToken(req: Request): string {
  req.session.csrf ??= randomBytes(32).toString('base64url');
  return req.session.csrf;
}

/** Constant-time comparison of two strings of any lengths. */
export function sameSecret(a: string, b: string): boolean {
  const digest = (s: string) => createHash('sha256').update(s).digest();
  return timingSafeEqual(digest(a), digest(b));
}

/**
 * `configured`: the origin of server.publicBaseUrl when the operator set one. Without it the relay
 * cannot know its public name, so the request's own (proxy-aware) host stands in.
 */
export function originCheck(configured: string | null): (req: Request) => boolean {
  return (req) => {
    const origin = req.get('origin');
    if (origin === undefined) return true;
    return origin === (configured ?? `${req.protocol}://${req.get('host')}`);
  };
}

const UNSAFE = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

export function csrfGuard(sameOrigin: (req: Request) => boolean): RequestHandler {
  return (req, _res, next) => {
    if (!UNSAFE.has(req.method)) return next();
    if (!sameOrigin(req)) {
      throw new PageError(
        403,
        'Request refused',
        'This form was sent from another website, so it was not carried out. Use the Guildgate pages themselves.',
        [{ href: '/dashboard', label: 'Go to your dashboard' }],
      );
    }
    const expected = req.session?.csrf;
    const given = (req.body as Record<string, unknown> | undefined)?._csrf ?? req.get('x-csrf-token');
    if (!expected || typeof given !== 'string' || !sameSecret(given, expected)) {
      throw new PageError(
        403,
        'Your page has expired',
        'The form was out of date or your session ended, so nothing was changed. Open the page again and retry.',
        [{ href: '/dashboard', label: 'Go to your dashboard' }],
      );
    }
    next();
  };
}
