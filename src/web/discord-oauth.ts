// Sign in with Discord, the authorization code flow with PKCE: the authorize URL, then on the way
// back the code exchange, the two reads the sign-in needs and the token's revocation. No token
// outlives the callback that got it.
import { createHash, randomBytes } from 'node:crypto';

export interface OAuthSettings {
  clientId: string;
  clientSecret: string;
  authorizeUrl: string;
  tokenUrl: string;
  /** REST base without the version, e.g. https://discord.com/api. */
  apiBaseUrl: string;
  redirectUri: string;
  guildId: string;
}

export const SCOPES = ['identify', 'guilds.members.read'];
/** Longest wait for a rate-limited call before giving up with "Discord is busy". */
const MAX_RETRY_WAIT_MS = 5_000;
const CALL_TIMEOUT_MS = 10_000;

export interface DiscordUser {
  id: string;
  username: string;
  globalName: string | null;
}

/** The member in the configured server, as the gates need it. */
export interface MemberSnapshot {
  pending: boolean;
  roleIds: string[];
  joinedAt: string | null;
}

/** Discord kept answering 429, or asked for a longer wait than a person should sit through. */
export class DiscordBusyError extends Error {
  constructor(readonly retryAfterSeconds: number) {
    super(`Discord is rate limiting sign-in (retry after ${retryAfterSeconds} s)`);
    this.name = 'DiscordBusyError';
  }
}

/** Discord refused a call; `code` is the OAuth `error` or Discord's JSON error code. */
export class DiscordCallError extends Error {
  constructor(
    readonly call: string,
    readonly status: number,
    readonly code: string | number | undefined,
  ) {
    super(`Discord answered ${call} with HTTP ${status}${code === undefined ? '' : ` (${code})`}`);
    this.name = 'DiscordCallError';
  }
}

/** A fresh PKCE pair: the verifier stays in the session, the S256 challenge goes to Discord. */
export function pkcePair(): { verifier: string; challenge: string } {
  const verifier = randomBytes(32).toString('base64url');
  return { verifier, challenge: createHash('sha256').update(verifier).digest('base64url') };
}

export function authorizeUrl(s: OAuthSettings, state: string, codeChallenge: string): string {
  const params = new URLSearchParams({
    response_type: 'code',
    client_id: s.clientId,
    redirect_uri: s.redirectUri,
    scope: SCOPES.join(' '),
    state,
    code_challenge: codeChallenge,
    code_challenge_method: 'S256',
    // No consent screen again for someone who already authorized these scopes.
    prompt: 'none',
  });
  // URLSearchParams writes spaces as `+`; Discord's own links use %20.
  return `${s.authorizeUrl}?${params.toString().replaceAll('+', '%20')}`;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function body(res: Response): Promise<Record<string, unknown>> {
  try {
    const parsed: unknown = await res.json();
    return parsed && typeof parsed === 'object' ? (parsed as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

/** Seconds Discord asks us to wait: `retry_after` in the body (a float), else the header. */
function retryAfter(res: Response, json: Record<string, unknown>): number {
  const fromBody = Number(json.retry_after);
  if (Number.isFinite(fromBody) && fromBody >= 0) return fromBody;
  const fromHeader = Number(res.headers.get('retry-after'));
  return Number.isFinite(fromHeader) && fromHeader >= 0 ? fromHeader : Number.POSITIVE_INFINITY;
}

/** One call, with a single patient retry when Discord rate limits it briefly. */
async function call(
  what: string,
  url: string,
  init: RequestInit,
): Promise<{ status: number; json: Record<string, unknown> }> {
  for (let attempt = 0; ; attempt++) {
    const res = await fetch(url, { ...init, signal: AbortSignal.timeout(CALL_TIMEOUT_MS) });
    const json = await body(res);
    if (res.status !== 429) {
      if (!res.ok && res.status !== 404) throw new DiscordCallError(what, res.status, errorCode(json));
      return { status: res.status, json };
    }
    const wait = retryAfter(res, json);
    if (attempt > 0 || wait * 1000 > MAX_RETRY_WAIT_MS) throw new DiscordBusyError(wait);
    await sleep(wait * 1000);
  }
}

function errorCode(json: Record<string, unknown>): string | number | undefined {
  const code = json.error ?? json.code;
  return typeof code === 'string' || typeof code === 'number' ? code : undefined;
}

/** RFC 6749 §2.3.1: client id and secret, form-encoded, as HTTP Basic credentials. */
function clientAuth(s: OAuthSettings): string {
  const enc = (v: string) => encodeURIComponent(v);
  return `Basic ${Buffer.from(`${enc(s.clientId)}:${enc(s.clientSecret)}`).toString('base64')}`;
}

function form(s: OAuthSettings, fields: Record<string, string>): RequestInit {
  return {
    method: 'POST',
    headers: { authorization: clientAuth(s), 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(fields).toString(),
  };
}

/** The access token for an authorization code. */
export async function exchangeCode(s: OAuthSettings, code: string, verifier: string): Promise<string> {
  const { status, json } = await call(
    'the token exchange',
    s.tokenUrl,
    form(s, { grant_type: 'authorization_code', code, redirect_uri: s.redirectUri, code_verifier: verifier }),
  );
  if (status !== 200 || typeof json.access_token !== 'string') {
    throw new DiscordCallError('the token exchange', status, errorCode(json));
  }
  return json.access_token;
}

const bearer = (token: string): RequestInit => ({ headers: { authorization: `Bearer ${token}` } });

export async function fetchUser(s: OAuthSettings, token: string): Promise<DiscordUser> {
  const { status, json } = await call('users/@me', `${s.apiBaseUrl}/v10/users/@me`, bearer(token));
  if (status !== 200 || typeof json.id !== 'string') throw new DiscordCallError('users/@me', status, errorCode(json));
  const text = (v: unknown) => (typeof v === 'string' && v !== '' ? v : null);
  return {
    id: json.id,
    username: text(json.username) ?? json.id,
    globalName: text(json.global_name),
  };
}

/** Discord's codes for "not in this server" (Unknown Guild for a user token, Unknown Member). */
const NOT_A_MEMBER = new Set([10004, 10007]);

/** The user's membership in the configured server; null when they are not in it. */
export async function fetchMember(s: OAuthSettings, token: string): Promise<MemberSnapshot | null> {
  const url = `${s.apiBaseUrl}/v10/users/@me/guilds/${encodeURIComponent(s.guildId)}/member`;
  const { status, json } = await call('the member lookup', url, bearer(token));
  if (status === 404 && NOT_A_MEMBER.has(Number(json.code))) return null;
  if (status !== 200) throw new DiscordCallError('the member lookup', status, errorCode(json));
  const roles = Array.isArray(json.roles) ? json.roles.filter((r): r is string => typeof r === 'string') : [];
  return {
    pending: json.pending === true,
    roleIds: roles,
    joinedAt: typeof json.joined_at === 'string' ? json.joined_at : null,
  };
}

/** Revokes the access token (and with it the grant's refresh token). */
export async function revokeToken(s: OAuthSettings, token: string): Promise<void> {
  const what = 'the token revocation';
  const { status, json } = await call(
    what,
    `${s.tokenUrl}/revoke`,
    form(s, { token, token_type_hint: 'access_token' }),
  );
  if (status !== 200) throw new DiscordCallError(what, status, errorCode(json));
}
