// Sign-in and sign-out routes. passport-discord (passport.ts) makes the redirect to Discord, keeps
// its state and PKCE verifier in the (pre-login) session and checks them on the way back; these routes
// decide what a person sees. A started sign-in is good for one callback only, whatever its outcome, and
// the session id changes once the member is known.
import { type Request, type Response, Router } from 'express';
import { destroy, frameFor, regenerate, type WebDeps } from './context.js';
import { DiscordBusyError, DiscordCallError } from './discord-oauth.js';
import { noticeAfterSession } from './notice.js';
import { messagePage } from './pages/message.js';
import { discordSignIn, OAUTH_SESSION_KEY, type SignedInMember } from './passport.js';
import { PageError, sendPage } from './respond.js';
import { SESSION_COOKIE } from './session.js';

/** How long a started sign-in may take on Discord's side. */
const SIGN_IN_TTL_MS = 10 * 60_000;

const signInAgain = [{ href: '/auth/discord', label: 'Sign in with Discord' }];

const notRecognised = () =>
  new PageError(
    400,
    'Sign-in not recognised',
    'This answer from Discord does not belong to a sign-in started in this browser, was already used or came too late. Start again.',
    signInAgain,
  );

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
  const discord = discordSignIn(d.oauth, d.s.log);

  router.get('/auth/discord', (req, res, next) => {
    // `then=create-key`: sent back here by /key/create because the membership facts were too old.
    const purpose = req.query.then === 'create-key' ? 'create-key' : 'sign-in';
    req.session.signIn = { startedAt: d.s.now().getTime(), purpose };
    // A session that is only a sign-in in progress need not outlive it.
    if (!req.session.user) req.session.cookie.maxAge = SIGN_IN_TTL_MS;
    discord.start(req, res, next);
  });

  router.get('/auth/discord/callback', async (req: Request, res: Response) => {
    const pending = req.session.signIn;
    // One callback per sign-in, whatever its outcome.
    delete req.session.signIn;
    const fresh = pending && d.s.now().getTime() - pending.startedAt <= SIGN_IN_TTL_MS;
    const { code, error } = req.query;
    const exchangeable = typeof code === 'string' && code !== '' && error === undefined;
    // passport checks (and spends) its state only on a callback with a code: the others spend it here.
    if (!fresh || !exchangeable) delete req.session[OAUTH_SESSION_KEY];
    if (!fresh) throw notRecognised();
    if (error === 'access_denied') {
      const frame = frameFor(req, res, 'You cancelled sign-in');
      return sendPage(
        res,
        messagePage(frame, 'You are not signed in. You can sign in whenever you like.', signInAgain),
      );
    }
    if (!exchangeable) {
      throw new PageError(400, 'Sign-in failed', 'Discord did not sign you in. Try again.', signInAgain);
    }
    let who: SignedInMember | false;
    try {
      who = await discord.finish(req, res);
    } catch (err) {
      throw discordFailure(d, err);
    }
    // passport's state check failed: a wrong, missing or already used state.
    if (!who) throw notRecognised();
    // A new session id for the signed-in member: an id planted before sign-in is worth nothing, and
    // the pre-login session (whatever passport kept in it) is gone with it.
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
