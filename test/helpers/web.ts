// Shared pieces of the web sign-in tests: a relay with the web app on in front of the fake OpenAI
// upstream and the fake Discord OAuth2, a cookie-jar HTTP client over fetch (redirects by hand, so
// every hop can be inspected), and a signIn helper that walks the OAuth2 dance as a browser would.
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import type { APIUser } from 'discord-api-types/v10';
import { type FakeDiscordOAuth, type MemberInput, snowflake, startFakeDiscordOAuth } from '../fakes/discord-oauth.js';
import { type FakeUpstream, startFakeUpstream } from '../fakes/openai-upstream.js';
import { startTestRelay, type TestRelay } from './relay.js';

export const DAY_MS = 86_400_000;

/** A free loopback port (the relay's redirect URI has to be known before it listens). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Cookie jar client

export interface ParsedCookie {
  name: string;
  value: string;
  /** Attribute names lower-cased; flag attributes map to `true`. */
  attributes: Record<string, string | true>;
  raw: string;
}

export function parseSetCookie(line: string): ParsedCookie {
  const [pair = '', ...attrs] = line.split(';');
  const eq = pair.indexOf('=');
  const attributes: Record<string, string | true> = {};
  for (const a of attrs) {
    const i = a.indexOf('=');
    const key = (i < 0 ? a : a.slice(0, i)).trim().toLowerCase();
    if (key) attributes[key] = i < 0 ? true : a.slice(i + 1).trim();
  }
  return { name: pair.slice(0, eq).trim(), value: pair.slice(eq + 1).trim(), attributes, raw: line };
}

export interface WebResponse {
  status: number;
  headers: Headers;
  /** Location header resolved against the request URL, or null. */
  location: string | null;
  text: string;
  setCookies: ParsedCookie[];
  url: string;
}

export interface RequestOptions {
  headers?: Record<string, string>;
  /** Origin header for POSTs: the client's own origin by default (as a browser sends), null for none. */
  origin?: string | null;
  /** Send no cookies with this request. */
  noCookies?: boolean;
}

/** An HTTP client with a cookie jar for one site; never follows redirects by itself. */
export class WebClient {
  readonly jar = new Map<string, ParsedCookie>();
  /** Every Set-Cookie line received, in order. */
  readonly received: ParsedCookie[] = [];

  constructor(
    readonly baseUrl: string,
    jar?: Iterable<[string, ParsedCookie]>,
  ) {
    for (const [k, v] of jar ?? []) this.jar.set(k, { ...v });
  }

  get origin(): string {
    return new URL(this.baseUrl).origin;
  }

  /** A second client holding a copy of this one's cookies (a stolen or replayed cookie). */
  clone(): WebClient {
    return new WebClient(this.baseUrl, this.jar);
  }

  cookie(name: string): string | undefined {
    return this.jar.get(name)?.value;
  }

  setCookie(name: string, value: string): void {
    this.jar.set(name, { name, value, attributes: {}, raw: `${name}=${value}` });
  }

  cookieHeader(): string {
    return [...this.jar.values()].map((c) => `${c.name}=${c.value}`).join('; ');
  }

  async request(method: string, pathOrUrl: string, body?: URLSearchParams, o: RequestOptions = {}) {
    const url = new URL(pathOrUrl, this.baseUrl).href;
    const headers: Record<string, string> = { accept: 'text/html,application/xhtml+xml,*/*', ...o.headers };
    const cookies = this.cookieHeader();
    if (cookies && !o.noCookies) headers.cookie = cookies;
    if (method !== 'GET' && method !== 'HEAD') {
      const origin = o.origin === undefined ? this.origin : o.origin;
      if (origin !== null) headers.origin = origin;
    }
    if (body) headers['content-type'] = 'application/x-www-form-urlencoded';
    const res = await fetch(url, { method, headers, body: body?.toString(), redirect: 'manual' });
    const text = await res.text();
    const setCookies = res.headers.getSetCookie().map(parseSetCookie);
    for (const c of setCookies) {
      this.received.push(c);
      const maxAge = c.attributes['max-age'];
      const expires = c.attributes.expires;
      const gone =
        (typeof maxAge === 'string' && Number(maxAge) <= 0) ||
        (typeof expires === 'string' && Date.parse(expires) <= Date.now());
      if (gone) this.jar.delete(c.name);
      else this.jar.set(c.name, c);
    }
    const loc = res.headers.get('location');
    return {
      status: res.status,
      headers: res.headers,
      location: loc === null ? null : new URL(loc, url).href,
      text,
      setCookies,
      url,
    } satisfies WebResponse;
  }

  get(pathOrUrl: string, o?: RequestOptions): Promise<WebResponse> {
    return this.request('GET', pathOrUrl, undefined, o);
  }

  post(pathOrUrl: string, form: Record<string, string> = {}, o?: RequestOptions): Promise<WebResponse> {
    return this.request('POST', pathOrUrl, new URLSearchParams(form), o);
  }

  /** GETs `pathOrUrl` and follows same-site redirects (at most 5). */
  async follow(pathOrUrl: string, o?: RequestOptions): Promise<WebResponse> {
    let res = await this.get(pathOrUrl, o);
    for (let i = 0; i < 5 && res.location && res.location.startsWith(this.origin); i++) {
      res = await this.get(res.location, o);
    }
    return res;
  }
}

/** The hidden `_csrf` value of the first form on the page. */
export function csrfToken(html: string): string {
  for (const tag of html.match(/<input\b[^>]*>/gi) ?? []) {
    if (/\bname=["']?_csrf["'\s>]/i.test(tag)) {
      const v = /\bvalue=["']([^"']*)["']/i.exec(tag);
      if (v) return decodeHtml(v[1]!);
    }
  }
  throw new Error(`no _csrf field on the page:\n${html.slice(0, 2_000)}`);
}

export function decodeHtml(s: string): string {
  return s
    .replace(/&#(\d+);/g, (_, d: string) => String.fromCharCode(Number(d)))
    .replace(/&#x([0-9a-f]+);/gi, (_, h: string) => String.fromCharCode(Number.parseInt(h, 16)))
    .replace(/&quot;/g, '"')
    .replace(/&#39;|&apos;/g, "'")
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&amp;/g, '&');
}

/** The page's text without tags (for "the page names it" assertions). */
export function pageText(html: string): string {
  return decodeHtml(
    html
      .replace(/<(script|style)\b[\s\S]*?<\/\1>/gi, ' ')
      .replace(/<[^>]+>/g, ' ')
      .replace(/\s+/g, ' '),
  ).trim();
}

// ---------------------------------------------------------------------------------------------
// Signing in

export interface SignInFlow {
  web: WebClient;
  oauth: FakeDiscordOAuth;
  /** The Discord user logged in at the fake (default: whoever is already logged in there). */
  userId?: string;
  /** Press Cancel on the consent page (or use the fake's deny mode). */
  deny?: boolean;
}

export interface SignInResult {
  /** The relay's 302 to Discord. */
  start: WebResponse;
  /** The authorize URL the relay sent the browser to. */
  authorize: URL;
  /** The cookie the browser held before signing in (from GET /auth/discord), if any. */
  preLoginCookie: string | undefined;
  /** Where Discord sent the browser back to (the callback with code/state or error/state). */
  callbackUrl: URL;
  code: string | null;
  state: string | null;
  /** The relay's answer to the callback. */
  callback: WebResponse;
  /** The page after following the relay's redirects (the dashboard on success). */
  page: WebResponse;
}

/** Walks Sign in with Discord as a browser does; asserts only the hops the contract fixes. */
export async function signIn(flow: SignInFlow): Promise<SignInResult> {
  const { web, oauth } = flow;
  if (flow.userId) oauth.loginAs(flow.userId);
  const start = await web.get('/auth/discord');
  if (start.status !== 302 || !start.location) {
    throw new Error(`GET /auth/discord answered ${start.status}, not a redirect:\n${start.text.slice(0, 500)}`);
  }
  const authorize = new URL(start.location);
  const preLoginCookie = web.cookie('gg.sid');
  let hop = await fetch(authorize, { redirect: 'manual' });
  if (hop.status === 200) {
    // The consent page: press a button.
    const html = await hop.text();
    const request = /name="request" value="([^"]+)"/.exec(html)?.[1];
    if (!request) throw new Error(`the fake's consent page has no request id:\n${html}`);
    hop = await fetch(new URL('/oauth2/authorize', authorize), {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ request, decision: flow.deny ? 'deny' : 'allow' }).toString(),
      redirect: 'manual',
    });
  }
  const back = hop.headers.get('location');
  if (hop.status !== 302 || !back) {
    throw new Error(`the fake Discord refused the authorize request (${hop.status}):\n${await hop.text()}`);
  }
  const callbackUrl = new URL(back);
  const callback = await web.get(callbackUrl.href);
  const page = callback.location?.startsWith(web.origin) ? await web.follow(callback.location) : callback;
  return {
    start,
    authorize,
    preLoginCookie,
    callbackUrl,
    code: callbackUrl.searchParams.get('code'),
    state: callbackUrl.searchParams.get('state'),
    callback,
    page,
  };
}

// ---------------------------------------------------------------------------------------------
// The stack: fake upstream + fake Discord OAuth2 + a relay with the web app on

export interface WebStackOptions {
  consentPage?: boolean;
  /** Replaces the `server` section fields (host, port and publicBaseUrl are always set). */
  server?: Record<string, unknown>;
  gates?: Record<string, unknown>;
  /** Extra config merged over the defaults. */
  config?: Record<string, unknown>;
  dataDir?: string;
  /** Reuse fakes (a second relay on the same fakes). */
  oauth?: FakeDiscordOAuth;
  upstream?: FakeUpstream;
  secrets?: { clientSecret: string; sessionSecret: string };
}

export interface WebStack {
  oauth: FakeDiscordOAuth;
  upstream: FakeUpstream;
  relay: TestRelay;
  url: string;
  applicationId: string;
  guildId: string;
  memberRoleId: string;
  clientSecret: string;
  sessionSecret: string;
  /** A user who passes every gate (account 30 days old, member with the required role), logged in at the fake. */
  newMember(input?: { createdAt?: number; member?: MemberInput | null; username?: string }): APIUser;
  web(): WebClient;
  stop(): Promise<void>;
}

export async function startWebStack(o: WebStackOptions = {}): Promise<WebStack> {
  const applicationId = o.oauth?.clientId ?? snowflake();
  const guildId = o.oauth?.guildId ?? snowflake();
  const memberRoleId = snowflake();
  const clientSecret = o.secrets?.clientSecret ?? `cs_${randomBytes(16).toString('hex')}`;
  const sessionSecret = o.secrets?.sessionSecret ?? `ss_${randomBytes(24).toString('hex')}`;
  const upstream = o.upstream ?? (await startFakeUpstream());
  const oauth =
    o.oauth ??
    (await startFakeDiscordOAuth({
      clientId: applicationId,
      clientSecret,
      redirectUris: [],
      guildId,
      consentPage: o.consentPage ?? false,
    }));

  let relay: TestRelay | null = null;
  let lastErr: unknown;
  for (let attempt = 0; attempt < 3 && !relay; attempt++) {
    const port = await freePort();
    const publicBaseUrl = `http://127.0.0.1:${port}`;
    oauth.registerRedirectUri(`${publicBaseUrl}/auth/discord/callback`);
    try {
      relay = await startTestRelay({
        upstreams: { fake: upstream.url },
        ...(o.dataDir ? { dataDir: o.dataDir } : {}),
        config: {
          server: { host: '127.0.0.1', shutdownGraceMs: 5_000, ...o.server, port, publicBaseUrl },
          gates: { requiredRoleIds: [memberRoleId], minAccountAgeDays: 7, requireScreening: true, ...o.gates },
          discord: { applicationId, guildId, apiBaseUrl: oauth.apiBaseUrl },
          web: { authorizeUrl: oauth.authorizeUrl, tokenUrl: oauth.tokenUrl },
          ...o.config,
        },
        env: { DISCORD_CLIENT_SECRET: clientSecret, GUILDGATE_SESSION_SECRET: sessionSecret },
      });
    } catch (err) {
      lastErr = err;
      if (!String((err as Error)?.message ?? err).includes('EADDRINUSE')) throw err;
    }
  }
  if (!relay) throw lastErr;
  const r = relay;

  return {
    oauth,
    upstream,
    relay: r,
    url: r.url,
    applicationId,
    guildId,
    memberRoleId,
    clientSecret,
    sessionSecret,
    newMember(input = {}) {
      const user = oauth.createUser({
        createdAt: input.createdAt ?? Date.now() - 30 * DAY_MS,
        ...(input.username ? { username: input.username } : {}),
      });
      if (input.member !== null) {
        oauth.addMember(user.id, { roles: [memberRoleId], joinedAt: Date.now() - 10 * DAY_MS, ...input.member });
      }
      oauth.loginAs(user.id);
      return user;
    },
    web: () => new WebClient(r.url),
    async stop() {
      await r.stop();
      if (!o.oauth) await oauth.close();
      if (!o.upstream) await upstream.close();
    },
  };
}
