// Sign in with Discord through passport (the design's choice, kept thin). passport-discord's strategy,
// on passport-oauth2, does the OAuth2 mechanics: the authorize redirect (response_type=code, client_id,
// redirect_uri, scopes, prompt), a fresh state and PKCE S256 pair kept in the pre-login session under
// OAUTH_SESSION_KEY, the one-time state check, and the code exchange (client_id + client_secret in the
// form body, which Discord accepts as well as HTTP Basic). Ours, on top:
// - the profile: passport-discord reads a hard-coded discord.com URL, so `userProfile` reads /users/@me
//   and the member in the configured server under `discord.apiBaseUrl` with the code's token, then
//   revokes the token (the calls are in discord-oauth.ts);
// - the token endpoint: its refusals as the errors the sign-in pages map, and what every other call to
//   Discord has, one patient retry of a brief 429 and a deadline (node-oauth, passport's transport, has
//   neither).
// Passport's own sessions (passport.session(), serializeUser) are not used: auth.ts puts the member in
// the express session itself, under a regenerated id. A local Authenticator, not passport's singleton;
// passport 0.7's authenticate() needs no passport.initialize() when the callback is custom.
import type { Request, RequestHandler, Response } from 'express';
import passport from 'passport';
import DiscordStrategy from 'passport-discord';
import type { Services } from '../services.js';
import {
  CALL_TIMEOUT_MS,
  DiscordBusyError,
  DiscordCallError,
  errorCode,
  fetchMember,
  fetchUser,
  jsonObject,
  MAX_RETRY_WAIT_MS,
  type OAuthSettings,
  retryAfter,
  revokeToken,
  SCOPES,
} from './discord-oauth.js';
import type { WebUser } from './session.js';

/** The session key under which passport-oauth2 keeps the state handle and the PKCE verifier. */
export const OAUTH_SESSION_KEY = 'oauth';

/** Who signed in, as read with the code's token (which is revoked by then). */
export type SignedInMember = Omit<WebUser, 'signedInAt'>;

type Log = Services['log'];

/** The strategy options passport-oauth2 1.8 takes and @types/passport-discord does not list. */
type Options = DiscordStrategy.StrategyOptions & { pkce: true };

class GuildgateDiscordStrategy extends DiscordStrategy {
  constructor(
    private readonly settings: OAuthSettings,
    private readonly log: Log,
  ) {
    const options: Options = {
      authorizationURL: settings.authorizeUrl,
      tokenURL: settings.tokenUrl,
      clientID: settings.clientId,
      clientSecret: settings.clientSecret,
      callbackURL: settings.redirectUri,
      scope: SCOPES,
      state: true,
      pkce: true,
      sessionKey: OAUTH_SESSION_KEY,
    };
    // The profile is the member: nothing to look up or create.
    super(options, (_accessToken, _refreshToken, profile, done) => done(null, profile));
    this.#patientTokenRequests();
  }

  /** The user and their membership, read with the token, which is then revoked whatever happened. */
  override userProfile(token: string, done: (err?: unknown, profile?: SignedInMember) => void): void {
    const read = async (): Promise<SignedInMember> => {
      try {
        const user = await fetchUser(this.settings, token);
        const member = await fetchMember(this.settings, token);
        return {
          discordId: user.id,
          username: user.username,
          displayName: user.globalName ?? user.username,
          member,
        };
      } finally {
        await revokeToken(this.settings, token).catch((err: Error) =>
          // Not fatal: the token was never stored and expires by itself. The message holds no token.
          this.log.warn({ reason: err.message }, 'revoking a Discord sign-in token failed'),
        );
      }
    };
    read().then(
      (member) => done(null, member),
      (err: unknown) => done(err),
    );
  }

  /** A refused code exchange: Discord's 429 is "busy", anything else names the OAuth error. */
  override parseErrorResponse(body: string, status: number): Error {
    const json = jsonObject(body);
    if (status === 429) return new DiscordBusyError(retryAfter(json, null));
    return new DiscordCallError('the token exchange', status, errorCode(json));
  }

  /** The code exchange waits out one brief 429 (the code is not spent by it) and gives up after a deadline. */
  #patientTokenRequests(): void {
    const oauth2 = this._oauth2;
    const exchange = oauth2.getOAuthAccessToken.bind(oauth2) as Exchange;
    const patient: Exchange = (code, params, callback) => {
      let settled = false;
      const finish: ExchangeCallback = (...args) => {
        if (settled) return;
        settled = true;
        clearTimeout(deadline);
        callback(...args);
      };
      const deadline = setTimeout(
        () => finish(new Error(`the token exchange took longer than ${CALL_TIMEOUT_MS} ms`)),
        CALL_TIMEOUT_MS,
      );
      const attempt = (retried: boolean) =>
        // A copy: node-oauth adds the client credentials and the code to the object it is given.
        exchange(code, { ...params }, (err, ...rest) => {
          if (!retried && err && 'statusCode' in err && err.statusCode === 429) {
            const wait = retryAfter(jsonObject(String(err.data ?? '')), null) * 1000;
            if (wait <= MAX_RETRY_WAIT_MS) return void setTimeout(() => attempt(true), wait);
          }
          finish(err, ...rest);
        });
      attempt(false);
    };
    oauth2.getOAuthAccessToken = patient as typeof oauth2.getOAuthAccessToken;
  }
}

type ExchangeCallback = (
  err: Error | { statusCode: number; data?: unknown } | null,
  accessToken?: string,
  refreshToken?: string,
  result?: unknown,
) => void;
type Exchange = (code: string, params: Record<string, string>, callback: ExchangeCallback) => void;

export interface DiscordSignIn {
  /** GET /auth/discord: redirects the browser to Discord with a fresh state and PKCE challenge. */
  start: RequestHandler;
  /**
   * A callback that carries a code: checks the state (used up either way), exchanges the code and
   * reads the member. False: the state did not match one kept in this session. Rejects with
   * Discord's failures (DiscordBusyError, DiscordCallError, passport-oauth2's errors).
   */
  finish(req: Request, res: Response): Promise<SignedInMember | false>;
}

export function discordSignIn(settings: OAuthSettings, log: Log): DiscordSignIn {
  const authenticator = new passport.Passport();
  authenticator.use(new GuildgateDiscordStrategy(settings, log));
  // No consent screen again for someone who already authorized these scopes.
  const startOptions: passport.AuthenticateOptions & { prompt: 'none' } = { session: false, prompt: 'none' };
  return {
    start: authenticator.authenticate('discord', startOptions),
    finish: (req, res) =>
      new Promise((resolve, reject) => {
        const done = (err: unknown, member?: unknown) =>
          err ? reject(err) : resolve((member as SignedInMember | false | undefined) ?? false);
        authenticator.authenticate('discord', { session: false }, done)(req, res, reject);
      }),
  };
}
