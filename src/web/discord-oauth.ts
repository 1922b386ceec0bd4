// Sign in with Discord: the settings, and the calls passport does not make. passport-discord (see
// passport.ts) builds the authorize URL, keeps state and PKCE, and exchanges the code; here are the two
// reads the sign-in needs with the code's token and the token's revocation, and the rate-limit and
// timeout policy that passport.ts gives the code exchange too. No token outlives the callback that got it.

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
export const MAX_RETRY_WAIT_MS = 5_000;
export const CALL_TIMEOUT_MS = 10_000;

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

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A JSON object body, or `{}` for anything else. */
export function jsonObject(text: string): Record<string, unknown> {
  try {
    const parsed: unknown = JSON.parse(text);
    return parsed && typeof parsed === 'object' ? (parsed as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

/** Seconds Discord asks us to wait: `retry_after` in the body (a float), else the header. */
export function retryAfter(json: Record<string, unknown>, header: string | null): number {
  const fromBody = Number(json.retry_after);
  if (Number.isFinite(fromBody) && fromBody >= 0) return fromBody;
  const fromHeader = Number(header);
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
    const json = jsonObject(await res.text());
    if (res.status !== 429) {
      if (!res.ok && res.status !== 404) throw new DiscordCallError(what, res.status, errorCode(json));
      return { status: res.status, json };
    }
    const wait = retryAfter(json, res.headers.get('retry-after'));
    if (attempt > 0 || wait * 1000 > MAX_RETRY_WAIT_MS) throw new DiscordBusyError(wait);
    await sleep(wait * 1000);
  }
}

export function errorCode(json: Record<string, unknown>): string | number | undefined {
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
