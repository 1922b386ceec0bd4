// A faithful fake of Discord's OAuth2 ("Sign in with Discord") for tests: the authorize page, the
// token and revocation endpoints, and the two user-token REST routes the web sign-in reads, on one
// loopback port.
//
//   const oauth = await startFakeDiscordOAuth({ clientId, clientSecret, redirectUris: [callback], guildId });
//   const user = oauth.createUser({ createdAt: Date.now() - 30 * DAY_MS });
//   oauth.addMember(user.id, { roles: [memberRole] });
//   oauth.loginAs(user.id);                     // the browser's "logged in" Discord user
//   web config: { authorizeUrl: oauth.authorizeUrl, tokenUrl: oauth.tokenUrl }, discord.apiBaseUrl: oauth.apiBaseUrl
//
// It enforces what Discord documents (see /work/shared/discord-facts.md), stricter where unsure:
// - authorize: response_type=code, a known client_id, a redirect_uri registered *exactly*, known
//   scopes, a state, and PKCE (code_challenge + code_challenge_method=S256) are all required; bad
//   requests get an error page and never a redirect. `prompt` is consent or none (none skips the
//   consent page only while the user still has a live token covering the scopes). The "logged-in user" consents at once (302 with
//   `code` and the same `state`), or through a small consent page with Authorize / Cancel buttons
//   (`consentPage: true`); `deny` mode redirects with `error=access_denied` and the same `state`.
// - token: form-encoded only (anything else 400), client auth by HTTP Basic or body
//   client_id + client_secret (`invalid_client` 401), codes single-use, short-lived, bound to the
//   client, the redirect_uri and the PKCE challenge (`invalid_grant` 400). Replaying a code also
//   revokes the tokens it produced (RFC 6749 §4.1.2).
// - revoke: form-encoded, client auth; revoking either token of a grant kills both.
// - `/api/v10/users/@me` (scope identify) and `/api/v10/users/@me/guilds/{guild}/member` (scope
//   guilds.members.read) with `Authorization: Bearer`; 401 `{message:'401: Unauthorized', code:0}`
//   otherwise, 404 `{message:'Unknown Guild', code:10004}` for a non-member.
// - injectable 429s per route with Discord's body and headers.
// Every request is recorded (Authorization values included: tests assert how the client authenticated).
import { createHash, randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { APIGuildMember, APIUser } from 'discord-api-types/v10';
import { buildUser, type UserInput } from './discord-model.js';

export type { UserInput } from './discord-model.js';
export { snowflake, snowflakeTime } from './discord-model.js';

// ---------------------------------------------------------------------------------------------
// Public types

export interface FakeDiscordOAuthOptions {
  clientId: string;
  clientSecret: string;
  /** Registered redirect URIs; the authorize request must name one exactly (more: `registerRedirectUri`). */
  redirectUris: string[];
  /** The guild whose membership `/users/@me/guilds/{guild}/member` answers for. */
  guildId: string;
  /** Show a consent page with Authorize / Cancel buttons instead of consenting at once (default false). */
  consentPage?: boolean;
  /** Lifetime of an authorization code (default 60 s; Discord's codes are short-lived). */
  codeTtlMs?: number;
  /** Lifetime of an access token (default 604800 s, as Discord). */
  accessTokenTtlSec?: number;
  /** Shown on the consent page. */
  applicationName?: string;
}

/** The routes a 429 can be injected into. */
export type OAuthRoute = 'authorize' | 'token' | 'revoke' | 'users/@me' | 'member';

export interface OAuthRateLimit {
  route: OAuthRoute;
  /** Seconds (float) in the body; the `retry-after` header is rounded up (default 0.3). */
  retryAfter?: number;
  global?: boolean;
  /** How many requests get the 429 (default 1). */
  count?: number;
}

export interface RecordedOAuthRequest {
  method: string;
  /** Path without the query. */
  path: string;
  route: OAuthRoute | 'consent' | null;
  query: Record<string, string>;
  headers: IncomingMessage['headers'];
  contentType: string | null;
  /** Form fields (form-encoded bodies), parsed JSON, or the raw text. */
  body: unknown;
  /** How a token/revoke request authenticated the client. */
  clientAuth: 'basic' | 'body' | 'both' | 'none' | null;
  status: number;
  /** OAuth `error` or Discord JSON `code` of an error answer. */
  error?: string | number;
  at: number;
}

export interface FakeMember {
  userId: string;
  roles: string[];
  joinedAt: Date;
  pending: boolean;
  nick: string | null;
  flags: number;
}

export interface MemberInput {
  roles?: string[];
  joinedAt?: Date | number;
  pending?: boolean;
  nick?: string | null;
  flags?: number;
}

export interface IssuedCode {
  code: string;
  clientId: string;
  userId: string;
  redirectUri: string;
  scope: string[];
  codeChallenge: string;
  issuedAt: number;
  expiresAt: number;
  /** When it was exchanged (null: not yet). */
  usedAt: number | null;
  /** Redemptions attempted after the first (replays). */
  replays: number;
}

export interface IssuedToken {
  accessToken: string;
  refreshToken: string;
  userId: string;
  scope: string[];
  /** The code it was exchanged for (null: from a refresh). */
  code: string | null;
  issuedAt: number;
  expiresAt: number;
  revokedAt: number | null;
  revokedBy: 'revoke' | 'code-replay' | 'refresh' | 'test' | null;
}

export interface RecordedRevocation {
  /** The token as sent. */
  token: string;
  tokenTypeHint: string | null;
  /** Which kind of issued token it matched (null: unknown token, still 200 as RFC 7009 says). */
  matched: 'access_token' | 'refresh_token' | null;
  clientAuth: 'basic' | 'body' | 'both';
  at: number;
}

/** What the authorize endpoint does for the "logged-in" user. */
export type ConsentMode = 'consent' | 'deny';

export interface FakeDiscordOAuth {
  /** `http://127.0.0.1:PORT`. */
  url: string;
  /** `${url}/oauth2/authorize`, for `web.authorizeUrl`. */
  authorizeUrl: string;
  /** `${url}/api/oauth2/token`, for `web.tokenUrl` (revocation is `${tokenUrl}/revoke`). */
  tokenUrl: string;
  /** `${url}/api`, for `discord.apiBaseUrl` (the app appends `/v10/...`). */
  apiBaseUrl: string;
  clientId: string;
  guildId: string;
  redirectUris: string[];

  users: Map<string, APIUser>;
  members: Map<string, FakeMember>;
  codes: Map<string, IssuedCode>;
  tokens: IssuedToken[];
  revocations: RecordedRevocation[];
  /** Every request, in order. */
  requests: RecordedOAuthRequest[];

  createUser(input?: UserInput): APIUser;
  /** Makes the user a member of the guild (creating nothing: the user must exist). */
  addMember(userId: string, input?: MemberInput): FakeMember;
  updateMember(userId: string, input: MemberInput): FakeMember;
  removeMember(userId: string): void;
  /** The Discord user "logged in" in the browser; authorize requests act as them. */
  loginAs(userId: string | null): void;
  readonly loggedInAs: string | null;
  /** `consent` (default) or `deny` (redirect with error=access_denied). */
  setMode(mode: ConsentMode): void;
  setConsentPage(on: boolean): void;
  registerRedirectUri(uri: string): void;
  /** The next matching request(s) get a 429. */
  injectRateLimit(injection: OAuthRateLimit): void;
  /** Marks every unused code as expired (as if the code lifetime passed). */
  expireCodes(): void;
  /** Revokes a token from the "Discord side" (the user de-authorized the app). */
  revokeToken(accessToken: string): void;
  /** The live (unexpired, unrevoked) access tokens of a user. */
  liveTokens(userId?: string): IssuedToken[];
  /** Requests to a route, in order. */
  requestsTo(route: OAuthRoute | 'consent'): RecordedOAuthRequest[];
  /** Resolves with the first truthy value of `check`, re-evaluated whenever the fake's state changes. */
  waitFor<T>(check: () => T | undefined | null | false, timeoutMs?: number, what?: string): Promise<T>;
  close(): Promise<void>;
}

// ---------------------------------------------------------------------------------------------
// Implementation

const KNOWN_SCOPES = new Set([
  'activities.read',
  'activities.write',
  'applications.builds.read',
  'applications.builds.upload',
  'applications.commands',
  'applications.commands.permissions.update',
  'applications.entitlements',
  'applications.store.update',
  'bot',
  'connections',
  'dm_channels.read',
  'email',
  'gdm.join',
  'guilds',
  'guilds.join',
  'guilds.members.read',
  'identify',
  'messages.read',
  'openid',
  'relationships.read',
  'role_connections.write',
  'rpc',
  'voice',
  'webhook.incoming',
]);

const UNAUTHORIZED = { message: '401: Unauthorized', code: 0 };
const NOT_FOUND = { message: '404: Not Found', code: 0 };
const UNKNOWN_GUILD = { message: 'Unknown Guild', code: 10004 };
const PKCE_VERIFIER = /^[A-Za-z0-9._~-]{43,128}$/;
const PKCE_CHALLENGE = /^[A-Za-z0-9_-]{43}$/;

class Answer {
  constructor(
    readonly status: number,
    readonly body: unknown,
    readonly headers: Record<string, string> = {},
    /** `json`, `html` (body is the page), or `redirect` (body is the Location). */
    readonly kind: 'json' | 'html' | 'redirect' = 'json',
  ) {}
}

const json = (status: number, body: unknown, headers?: Record<string, string>) => new Answer(status, body, headers);
const oauthError = (status: number, error: string, description?: string, headers?: Record<string, string>) =>
  json(status, description ? { error, error_description: description } : { error }, headers);
const redirect = (location: string) => new Answer(302, location, {}, 'redirect');

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function htmlPage(title: string, body: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font-family:sans-serif;background:#313338;color:#dbdee1;display:flex;justify-content:center;padding:3rem}
main{background:#2b2d31;border-radius:8px;padding:2rem;max-width:26rem}button{font-size:1rem;padding:.6rem 1.2rem;border:0;border-radius:4px;margin-right:.5rem}
button[value=allow]{background:#5865f2;color:#fff}ul{padding-left:1.2rem}</style></head>
<body><main>${body}</main></body></html>`;
}

const errorPage = (status: number, message: string) =>
  new Answer(
    status,
    htmlPage('Discord', `<h1>Something went wrong</h1><p id="error">${escapeHtml(message)}</p>`),
    {},
    'html',
  );

const b64url = (buf: Buffer) => buf.toString('base64url');
const token = (bytes = 24) => randomBytes(bytes).toString('base64url').replace(/[-_]/g, 'x').slice(0, 30);

function readRaw(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

interface PendingConsent {
  id: string;
  params: AuthorizeParams;
  userId: string;
}

interface AuthorizeParams {
  clientId: string;
  redirectUri: string;
  scope: string[];
  state: string;
  codeChallenge: string;
  /** `none`: skip the consent page when the user still has a live grant covering the scopes. */
  prompt: string | null;
}

interface ClientAuth {
  method: 'basic' | 'body' | 'both';
  ok: boolean;
}

export async function startFakeDiscordOAuth(opts: FakeDiscordOAuthOptions): Promise<FakeDiscordOAuth> {
  const codeTtlMs = opts.codeTtlMs ?? 60_000;
  const accessTokenTtlSec = opts.accessTokenTtlSec ?? 604_800;
  const appName = opts.applicationName ?? 'Guildgate';
  const redirectUris = [...opts.redirectUris];
  const users = new Map<string, APIUser>();
  const members = new Map<string, FakeMember>();
  const codes = new Map<string, IssuedCode>();
  const tokens: IssuedToken[] = [];
  const revocations: RecordedRevocation[] = [];
  const requests: RecordedOAuthRequest[] = [];
  const pending = new Map<string, PendingConsent>();
  const rateLimits: Array<Required<Omit<OAuthRateLimit, 'global'>> & { global: boolean }> = [];
  const changed = new EventEmitter();
  changed.setMaxListeners(0);
  let loggedInAs: string | null = null;
  let mode: ConsentMode = 'consent';
  let consentPage = opts.consentPage ?? false;

  const notify = () => changed.emit('change');

  // --- authorize ---------------------------------------------------------------------------

  /** Validates an authorize request; an Answer is the error page (Discord never redirects on these). */
  function parseAuthorize(q: URLSearchParams): AuthorizeParams | Answer {
    const clientId = q.get('client_id');
    if (!clientId || clientId !== opts.clientId) return errorPage(400, 'Unknown Application');
    const redirectUri = q.get('redirect_uri');
    if (!redirectUri || !redirectUris.includes(redirectUri)) return errorPage(400, 'Invalid OAuth2 redirect_uri');
    if (q.get('response_type') !== 'code') return errorPage(400, 'Invalid response_type (only "code" is supported)');
    const rawScope = q.get('scope');
    if (!rawScope) return errorPage(400, 'Invalid scope: none given');
    // URLSearchParams decodes both %20 and +, Discord accepts both separators.
    const scope = rawScope.split(' ').filter(Boolean);
    const unknown = scope.filter((s) => !KNOWN_SCOPES.has(s));
    if (unknown.length > 0 || scope.length === 0) return errorPage(400, `Invalid scope: ${unknown.join(' ')}`);
    const state = q.get('state');
    if (!state) return errorPage(400, 'A state parameter is required (CSRF protection)');
    const codeChallenge = q.get('code_challenge');
    const method = q.get('code_challenge_method');
    if (!codeChallenge || !PKCE_CHALLENGE.test(codeChallenge)) {
      return errorPage(400, 'Invalid code_challenge (PKCE is required: a base64url SHA-256 of the verifier)');
    }
    if (method !== 'S256') return errorPage(400, 'Invalid code_challenge_method (only S256 is accepted)');
    const prompt = q.get('prompt');
    if (prompt !== null && prompt !== 'consent' && prompt !== 'none') return errorPage(400, 'Invalid prompt');
    return { clientId, redirectUri, scope, state, codeChallenge, prompt };
  }

  function finishAuthorize(params: AuthorizeParams, userId: string, allow: boolean): Answer {
    const target = new URL(params.redirectUri);
    if (!allow) {
      target.searchParams.set('error', 'access_denied');
      target.searchParams.set('error_description', 'The resource owner or authorization server denied the request');
      target.searchParams.set('state', params.state);
      return redirect(target.href);
    }
    const code = token(20);
    const now = Date.now();
    codes.set(code, {
      code,
      clientId: params.clientId,
      userId,
      redirectUri: params.redirectUri,
      scope: params.scope,
      codeChallenge: params.codeChallenge,
      issuedAt: now,
      expiresAt: now + codeTtlMs,
      usedAt: null,
      replays: 0,
    });
    target.searchParams.set('code', code);
    target.searchParams.set('state', params.state);
    notify();
    return redirect(target.href);
  }

  function consentHtml(p: PendingConsent): string {
    const user = users.get(p.userId)!;
    const scopes: Record<string, string> = {
      identify: 'Access your username, avatar, and banner',
      'guilds.members.read': 'Read your member info (nickname, avatar, roles, join date) in your servers',
      guilds: 'Know what servers you are in',
      email: 'Access your email address',
    };
    const items = p.params.scope.map((s) => `<li>${escapeHtml(scopes[s] ?? s)}</li>`).join('');
    return htmlPage(
      `Authorize ${appName}`,
      `<h1>${escapeHtml(appName)}</h1>
<p>wants to access your account <strong id="user">${escapeHtml(user.global_name ?? user.username)}</strong></p>
<p>This will allow the developer of ${escapeHtml(appName)} to:</p><ul>${items}</ul>
<form method="post" action="/oauth2/authorize">
<input type="hidden" name="request" value="${escapeHtml(p.id)}">
<button type="submit" name="decision" value="deny">Cancel</button>
<button type="submit" name="decision" value="allow">Authorize</button>
</form>`,
    );
  }

  function authorize(q: URLSearchParams): Answer {
    const parsed = parseAuthorize(q);
    if (parsed instanceof Answer) return parsed;
    if (!loggedInAs || !users.has(loggedInAs)) {
      return errorPage(401, 'Nobody is logged in to the fake Discord (call loginAs(userId) in the test)');
    }
    if (mode === 'deny' && !consentPage) return finishAuthorize(parsed, loggedInAs, false);
    if (!consentPage) return finishAuthorize(parsed, loggedInAs, true);
    // Discord skips its screen for prompt=none only while the app is still authorized (a live
    // token covering the scopes); revoking the token removes the authorization.
    const user = loggedInAs;
    const authorized = fake.liveTokens(user).some((t) => parsed.scope.every((sc) => t.scope.includes(sc)));
    if (parsed.prompt === 'none' && authorized) return finishAuthorize(parsed, user, mode !== 'deny');
    const p: PendingConsent = { id: token(16), params: parsed, userId: loggedInAs };
    pending.set(p.id, p);
    return new Answer(200, consentHtml(p), {}, 'html');
  }

  function consent(form: URLSearchParams): Answer {
    const p = pending.get(form.get('request') ?? '');
    if (!p) return errorPage(400, 'This authorization request is unknown or was already answered');
    pending.delete(p.id);
    const decision = form.get('decision');
    if (decision !== 'allow' && decision !== 'deny') return errorPage(400, 'Choose Authorize or Cancel');
    return finishAuthorize(p.params, p.userId, decision === 'allow' && mode !== 'deny');
  }

  // --- token / revoke ----------------------------------------------------------------------

  function clientAuth(req: IncomingMessage, form: URLSearchParams): ClientAuth | null {
    const header = req.headers.authorization;
    let basic: { id: string; secret: string } | null = null;
    if (header) {
      const m = /^Basic ([A-Za-z0-9+/=]+)$/i.exec(header);
      if (!m) return { method: 'basic', ok: false };
      const decoded = Buffer.from(m[1]!, 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      if (colon < 0) return { method: 'basic', ok: false };
      try {
        // RFC 6749 §2.3.1: both parts are form-urlencoded before base64.
        basic = {
          id: decodeURIComponent(decoded.slice(0, colon).replace(/\+/g, ' ')),
          secret: decodeURIComponent(decoded.slice(colon + 1).replace(/\+/g, ' ')),
        };
      } catch {
        return { method: 'basic', ok: false };
      }
    }
    const bodyId = form.get('client_id');
    const bodySecret = form.get('client_secret');
    const body = bodySecret !== null ? { id: bodyId ?? '', secret: bodySecret } : null;
    if (!basic && !body) return null;
    const good = (c: { id: string; secret: string }) => c.id === opts.clientId && c.secret === opts.clientSecret;
    if (basic && body) return { method: 'both', ok: good(basic) && good(body) };
    if (basic) {
      // A body client_id must agree with the Basic credentials.
      return { method: 'basic', ok: good(basic) && (bodyId === null || bodyId === basic.id) };
    }
    return { method: 'body', ok: good(body!) };
  }

  const invalidClient = (auth: ClientAuth | null) =>
    oauthError(
      401,
      'invalid_client',
      undefined,
      auth?.method === 'basic' || auth?.method === 'both' ? { 'www-authenticate': 'Basic realm="discord"' } : {},
    );

  function isForm(req: IncomingMessage): boolean {
    const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
    return type === 'application/x-www-form-urlencoded';
  }

  function issueToken(userId: string, scope: string[], code: string | null): IssuedToken {
    const now = Date.now();
    const t: IssuedToken = {
      accessToken: token(),
      refreshToken: token(),
      userId,
      scope,
      code,
      issuedAt: now,
      expiresAt: now + accessTokenTtlSec * 1000,
      revokedAt: null,
      revokedBy: null,
    };
    tokens.push(t);
    notify();
    return t;
  }

  function revoke(t: IssuedToken, by: NonNullable<IssuedToken['revokedBy']>): void {
    if (t.revokedAt !== null) return;
    t.revokedAt = Date.now();
    t.revokedBy = by;
    notify();
  }

  const tokenJson = (t: IssuedToken) => ({
    access_token: t.accessToken,
    token_type: 'Bearer',
    expires_in: Math.round((t.expiresAt - t.issuedAt) / 1000),
    refresh_token: t.refreshToken,
    scope: t.scope.join(' '),
  });

  function exchange(req: IncomingMessage, form: URLSearchParams, rec: RecordedOAuthRequest): Answer {
    const auth = clientAuth(req, form);
    rec.clientAuth = auth?.method ?? 'none';
    if (!auth?.ok) return invalidClient(auth);
    const grant = form.get('grant_type');
    if (grant === 'authorization_code') {
      const c = codes.get(form.get('code') ?? '');
      if (!c) return oauthError(400, 'invalid_grant', 'Invalid "code" in request.');
      if (c.usedAt !== null) {
        c.replays += 1;
        for (const t of tokens) if (t.code === c.code) revoke(t, 'code-replay');
        return oauthError(400, 'invalid_grant', 'Invalid "code" in request.');
      }
      if (Date.now() > c.expiresAt) return oauthError(400, 'invalid_grant', 'Invalid "code" in request.');
      if (c.clientId !== opts.clientId) return oauthError(400, 'invalid_grant', 'Invalid "code" in request.');
      if (form.get('redirect_uri') !== c.redirectUri) {
        return oauthError(400, 'invalid_grant', 'Invalid "redirect_uri" in request.');
      }
      const verifier = form.get('code_verifier');
      if (!verifier || !PKCE_VERIFIER.test(verifier)) {
        return oauthError(400, 'invalid_grant', 'Invalid "code_verifier" in request.');
      }
      if (b64url(createHash('sha256').update(verifier).digest()) !== c.codeChallenge) {
        return oauthError(400, 'invalid_grant', 'Invalid "code_verifier" in request.');
      }
      c.usedAt = Date.now();
      return json(200, tokenJson(issueToken(c.userId, c.scope, c.code)));
    }
    if (grant === 'refresh_token') {
      const old = tokens.find((t) => t.refreshToken === form.get('refresh_token'));
      if (!old || old.revokedAt !== null)
        return oauthError(400, 'invalid_grant', 'Invalid "refresh_token" in request.');
      revoke(old, 'refresh');
      return json(200, tokenJson(issueToken(old.userId, old.scope, null)));
    }
    return oauthError(400, 'unsupported_grant_type', `Grant type ${grant ?? 'None'} is not supported`);
  }

  function revokeRoute(req: IncomingMessage, form: URLSearchParams, rec: RecordedOAuthRequest): Answer {
    const auth = clientAuth(req, form);
    rec.clientAuth = auth?.method ?? 'none';
    if (!auth?.ok) return invalidClient(auth);
    const given = form.get('token');
    if (!given) return oauthError(400, 'invalid_request', 'Missing "token" in request.');
    const t = tokens.find((x) => x.accessToken === given || x.refreshToken === given);
    revocations.push({
      token: given,
      tokenTypeHint: form.get('token_type_hint'),
      matched: !t ? null : t.accessToken === given ? 'access_token' : 'refresh_token',
      clientAuth: auth.method,
      at: Date.now(),
    });
    if (t) revoke(t, 'revoke');
    notify();
    return json(200, {});
  }

  // --- user-token REST ---------------------------------------------------------------------

  function bearer(req: IncomingMessage, scope: string): IssuedToken | null {
    const m = /^Bearer (\S+)$/.exec(req.headers.authorization ?? '');
    if (!m) return null;
    const t = tokens.find((x) => x.accessToken === m[1]);
    if (!t || t.revokedAt !== null || Date.now() > t.expiresAt || !t.scope.includes(scope)) return null;
    return t;
  }

  function userJson(u: APIUser): APIUser {
    return { ...u, discriminator: '0', mfa_enabled: false, locale: 'en-US', premium_type: 0 };
  }

  function memberJson(m: FakeMember): APIGuildMember {
    return {
      user: users.get(m.userId)!,
      nick: m.nick,
      avatar: null,
      banner: null,
      roles: [...m.roles],
      joined_at: m.joinedAt.toISOString(),
      premium_since: null,
      deaf: false,
      mute: false,
      flags: m.flags,
      pending: m.pending,
      communication_disabled_until: null,
    };
  }

  // --- dispatch ----------------------------------------------------------------------------

  function routeOf(method: string, path: string): { route: RecordedOAuthRequest['route']; guild?: string } {
    if (path === '/oauth2/authorize') return { route: method === 'POST' ? 'consent' : 'authorize' };
    if (path === '/api/oauth2/token' || path === '/api/v10/oauth2/token') return { route: 'token' };
    if (path === '/api/oauth2/token/revoke' || path === '/api/v10/oauth2/token/revoke') return { route: 'revoke' };
    if (path === '/api/v10/users/@me') return { route: 'users/@me' };
    const m = /^\/api\/v10\/users\/@me\/guilds\/([^/]+)\/member$/.exec(path);
    if (m) return { route: 'member', guild: decodeURIComponent(m[1]!) };
    return { route: null };
  }

  const ALLOWED: Record<string, string> = {
    authorize: 'GET',
    consent: 'POST',
    token: 'POST',
    revoke: 'POST',
    'users/@me': 'GET',
    member: 'GET',
  };

  function takeRateLimit(route: OAuthRoute): Answer | null {
    const i = rateLimits.findIndex((r) => r.route === route);
    if (i < 0) return null;
    const r = rateLimits[i]!;
    r.count -= 1;
    if (r.count <= 0) rateLimits.splice(i, 1);
    const headers: Record<string, string> = {
      'retry-after': String(Math.ceil(r.retryAfter)),
      'x-ratelimit-limit': '5',
      'x-ratelimit-remaining': '0',
      'x-ratelimit-reset': String((Date.now() + r.retryAfter * 1000) / 1000),
      'x-ratelimit-reset-after': String(r.retryAfter),
      'x-ratelimit-bucket': createHash('sha1').update(route).digest('hex').slice(0, 16),
      'x-ratelimit-scope': r.global ? 'global' : 'user',
    };
    if (r.global) headers['x-ratelimit-global'] = 'true';
    return json(429, { message: 'You are being rate limited.', retry_after: r.retryAfter, global: r.global }, headers);
  }

  async function dispatch(req: IncomingMessage, raw: string, rec: RecordedOAuthRequest): Promise<Answer> {
    const url = new URL(req.url ?? '/', 'http://fake');
    const { route, guild } = routeOf(rec.method, url.pathname);
    rec.route = route;
    if (url.pathname === '/favicon.ico') return new Answer(204, '', {}, 'html');
    if (!route) {
      return url.pathname.startsWith('/api/') ? json(404, NOT_FOUND) : errorPage(404, 'Not found');
    }
    if (rec.method !== ALLOWED[route]) {
      return url.pathname.startsWith('/api/')
        ? json(405, { message: '405: Method Not Allowed', code: 0 })
        : errorPage(405, 'Method not allowed');
    }
    if (route !== 'consent') {
      const limited = takeRateLimit(route);
      if (limited) return limited;
    }
    switch (route) {
      case 'authorize':
        return authorize(url.searchParams);
      case 'consent': {
        if (!isForm(req)) return errorPage(400, 'Bad request');
        return consent(new URLSearchParams(raw));
      }
      case 'token':
      case 'revoke': {
        if (!isForm(req)) {
          return oauthError(400, 'unsupported_grant_type', 'Grant type None is not supported');
        }
        const form = new URLSearchParams(raw);
        rec.body = Object.fromEntries(form);
        return route === 'token' ? exchange(req, form, rec) : revokeRoute(req, form, rec);
      }
      case 'users/@me': {
        const t = bearer(req, 'identify');
        if (!t) return json(401, UNAUTHORIZED);
        const u = users.get(t.userId);
        return u ? json(200, userJson(u)) : json(401, UNAUTHORIZED);
      }
      case 'member': {
        const t = bearer(req, 'guilds.members.read');
        if (!t) return json(401, UNAUTHORIZED);
        if (guild !== opts.guildId) return json(404, UNKNOWN_GUILD);
        const m = members.get(t.userId);
        return m ? json(200, memberJson(m)) : json(404, UNKNOWN_GUILD);
      }
    }
  }

  const server = createServer((req, res) => {
    handle(req, res).catch(() => res.destroy());
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const raw = await readRaw(req);
    const url = new URL(req.url ?? '/', 'http://fake');
    const contentType = req.headers['content-type'] ?? null;
    let body: unknown;
    if (raw !== '') {
      if ((contentType ?? '').startsWith('application/x-www-form-urlencoded')) {
        body = Object.fromEntries(new URLSearchParams(raw));
      } else {
        try {
          body = JSON.parse(raw);
        } catch {
          body = raw;
        }
      }
    }
    const rec: RecordedOAuthRequest = {
      method: req.method ?? 'GET',
      path: url.pathname,
      route: null,
      query: Object.fromEntries(url.searchParams),
      headers: req.headers,
      contentType,
      body,
      clientAuth: null,
      status: 0,
      at: Date.now(),
    };
    const answer = await dispatch(req, raw, rec);
    rec.status = answer.status;
    if (answer.status >= 400 && answer.kind === 'json') {
      const b = answer.body as { error?: string; code?: number };
      rec.error = b.error ?? b.code;
    }
    requests.push(rec);
    notify();
    const headers: Record<string, string> = { 'cache-control': 'no-store', ...answer.headers };
    if (answer.kind === 'redirect') {
      res.writeHead(answer.status, { ...headers, location: String(answer.body), 'content-length': '0' });
      res.end();
      return;
    }
    const text = answer.kind === 'html' ? String(answer.body) : JSON.stringify(answer.body);
    const type = answer.kind === 'html' ? 'text/html; charset=utf-8' : 'application/json';
    res.writeHead(answer.status, {
      ...headers,
      ...(text ? { 'content-type': type } : {}),
      'content-length': String(Buffer.byteLength(text)),
    });
    res.end(text);
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  const fake: FakeDiscordOAuth = {
    url: base,
    authorizeUrl: `${base}/oauth2/authorize`,
    tokenUrl: `${base}/api/oauth2/token`,
    apiBaseUrl: `${base}/api`,
    clientId: opts.clientId,
    guildId: opts.guildId,
    redirectUris,
    users,
    members,
    codes,
    tokens,
    revocations,
    requests,

    createUser(input) {
      const u = buildUser(input);
      users.set(u.id, u);
      notify();
      return u;
    },
    addMember(userId, input = {}) {
      if (!users.has(userId)) throw new Error(`addMember: no user ${userId} (createUser first)`);
      const m: FakeMember = {
        userId,
        roles: [...(input.roles ?? [])],
        joinedAt: input.joinedAt === undefined ? new Date() : new Date(input.joinedAt),
        pending: input.pending ?? false,
        nick: input.nick ?? null,
        flags: input.flags ?? 0,
      };
      members.set(userId, m);
      notify();
      return m;
    },
    updateMember(userId, input) {
      const m = members.get(userId);
      if (!m) throw new Error(`updateMember: ${userId} is not a member`);
      if (input.roles) m.roles = [...input.roles];
      if (input.joinedAt !== undefined) m.joinedAt = new Date(input.joinedAt);
      if (input.pending !== undefined) m.pending = input.pending;
      if (input.nick !== undefined) m.nick = input.nick;
      if (input.flags !== undefined) m.flags = input.flags;
      notify();
      return m;
    },
    removeMember(userId) {
      members.delete(userId);
      notify();
    },
    loginAs(userId) {
      if (userId !== null && !users.has(userId)) throw new Error(`loginAs: no user ${userId}`);
      loggedInAs = userId;
    },
    get loggedInAs() {
      return loggedInAs;
    },
    setMode(m) {
      mode = m;
    },
    setConsentPage(on) {
      consentPage = on;
    },
    registerRedirectUri(uri) {
      if (!redirectUris.includes(uri)) redirectUris.push(uri);
    },
    injectRateLimit(injection) {
      rateLimits.push({
        route: injection.route,
        retryAfter: injection.retryAfter ?? 0.3,
        global: injection.global ?? false,
        count: injection.count ?? 1,
      });
    },
    expireCodes() {
      const now = Date.now();
      for (const c of codes.values()) if (c.usedAt === null) c.expiresAt = now - 1;
    },
    revokeToken(accessToken) {
      const t = tokens.find((x) => x.accessToken === accessToken);
      if (!t) throw new Error('revokeToken: unknown token');
      revoke(t, 'test');
    },
    liveTokens(userId) {
      const now = Date.now();
      return tokens.filter(
        (t) => t.revokedAt === null && t.expiresAt > now && (userId === undefined || t.userId === userId),
      );
    },
    requestsTo(route) {
      return requests.filter((r) => r.route === route);
    },
    waitFor(check, timeoutMs = 5_000, what = 'condition') {
      return new Promise((resolve, reject) => {
        const attempt = () => {
          const v = check();
          if (v) {
            cleanup();
            resolve(v);
          }
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`fake Discord OAuth: ${what} not met within ${timeoutMs} ms`));
        }, timeoutMs);
        const cleanup = () => {
          clearTimeout(timer);
          changed.off('change', attempt);
        };
        changed.on('change', attempt);
        attempt();
      });
    },
    close() {
      return new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
  return fake;
}
