// Sign-in and sign-out routes. The state and PKCE verifier of a sign-in live in the (pre-login)
// session, are good for one callback only, and the session id changes once the member is known.
import { randomBytes } from 'node:crypto';
import { type Request, type Response, Router } from 'express';
import { destroy, frameFor, regenerate, type WebDeps } from './context.js';
import { sameSecret } from './csrf.js';
import {
  authorizeUrl,
  DiscordBusyError,
  DiscordCallError,
  exchangeCode,
  fetchMember,
  fetchUser,
  pkcePair,
  revokeToken,
} from './discord-oauth.js';
import { noticeAfterSession } from './notice.js';
import { messagePage } from './pages/message.js';
import { PageError, sendPage } from './respond.js';
import { SESSION_COOKIE, type WebUser } from './session.js';

/** How long a started sign-in may take on Discord's side. */
const SIGN_IN_TTL_MS = 10 * 60_000;

const signInAgain = [{ href: '/auth/discord', label: 'Sign in with Discord' }];

/** Who the code belongs to, read with the code's token, which is revoked before this returns. */
async function identify(d: WebDeps, code: string, verifier: string): Promise<Omit<WebUser, 'signedInAt'>> {
  const token = await exchangeCode(d.oauth, code, verifier);
  try {
    const user = await fetchUser(d.oauth, token);
    const member = await fetchMember(d.oauth, token);
    return {
      discordId: user.id,
      username: user.username,
      displayName: user.globalName ?? user.username,
      member,
    };
  } finally {
    await revokeToken(d.oauth, token).catch((err: Error) =>
      // Not fatal: the token was never stored and expires by itself. The message holds no token.
      d.s.log.warn({ reason: err.message }, 'revoking a Discord sign-in token failed'),
    );
  }
}

/** What a failed call to Discord means for the person signing in. */
function discordFailure(d: WebDeps, err: unknown): PageError {
  if (err instanceof DiscordBusyError) {
    return new PageError(
      503,
      'Discord is busy',
      'Discord asked us to slow down. Wait a minute, then sign in again.',
      signInAgain,
    );
  }
  if (err instanceof DiscordCallError && err.code === 'invalid_grant') {
    return new PageError(
      400,
      'Sign-in expired',
      'Discord did not accept the sign-in (it took too long or was already used). Sign in again.',
      signInAgain,
    );
  }
  d.s.log.warn({ reason: err instanceof Error ? err.message : String(err) }, 'Discord sign-in failed');
  return new PageError(
    502,
    'Discord could not be reached',
    'Signing in with Discord failed on the way. Try again in a moment.',
    signInAgain,
  );
}

export function authRoutes(d: WebDeps): Router {
  const router = Router();

  router.get('/auth/discord', (req, res) => {
    const { verifier, challenge } = pkcePair();
    const state = randomBytes(24).toString('base64url');
    // `then=create-key`: sent back here by /key/create because the membership facts were too old.
    const purpose = req.query.then === 'create-key' ? 'create-key' : 'sign-in';
    req.session.oauth = { state, verifier, startedAt: d.s.now().getTime(), purpose };
    // A session that is only a sign-in in progress need not outlive it.
    if (!req.session.user) req.session.cookie.maxAge = SIGN_IN_TTL_MS;
    res.redirect(302, authorizeUrl(d.oauth, state, challenge));
  });

  router.get('/auth/discord/callback', async (req: Request, res: Response) => {
    const pending = req.session.oauth;
    // One callback per sign-in, whatever its outcome.
    delete req.session.oauth;
    const { state, code, error } = req.query;
    const fresh = pending && d.s.now().getTime() - pending.startedAt <= SIGN_IN_TTL_MS;
    if (!pending || !fresh || typeof state !== 'string' || !sameSecret(state, pending.state)) {
      throw new PageError(
        400,
        'Sign-in not recognised',
        'This answer from Discord does not belong to a sign-in started in this browser, was already used or came too late. Start again.',
        signInAgain,
      );
    }
    if (error === 'access_denied') {
      const frame = frameFor(req, res, 'You cancelled sign-in');
      return sendPage(
        res,
        messagePage(frame, 'You are not signed in. You can sign in whenever you like.', signInAgain),
      );
    }
    if (typeof error === 'string' || typeof code !== 'string' || code === '') {
      throw new PageError(400, 'Sign-in failed', 'Discord did not sign you in. Try again.', signInAgain);
    }
    let who: Omit<WebUser, 'signedInAt'>;
    try {
      who = await identify(d, code, pending.verifier);
    } catch (err) {
      throw discordFailure(d, err);
    }
    // A new session id for the signed-in member: an id planted before sign-in is worth nothing.
    await regenerate(req);
    req.session.user = { ...who, signedInAt: d.s.now().getTime() };
    if (pending.purpose === 'create-key') {
      req.session.notice = 'You signed in again, so your membership was checked just now. Create your key below.';
    }
    res.redirect(302, '/dashboard');
  });

  router.post('/auth/logout', async (req, res) => {
    await destroy(req);
    res.clearCookie(SESSION_COOKIE, { path: '/' });
    noticeAfterSession(req, res, 'signed-out');
    res.redirect(303, '/');
  });

  return router;
}
