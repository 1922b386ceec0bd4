// Sign in with Discord and the member dashboard over plain HTTP with a cookie jar: the real relay
// (SQLite) with the web app on, the fake Discord OAuth2 (test/fakes/discord-oauth.ts) and the fake
// OpenAI upstream. Covers the OAuth2 dance (state, PKCE, client auth, code replay, token
// revocation), sessions (fixation, logout replay, cookie flags), CSRF (token and Origin), gate
// refusals, the key shown once, export and deletion, and finally a leak scan of logs and data files.
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findKeysInText, hashKey } from '../../src/domain/keys.js';
import { type FakeDiscordOAuth, snowflake, startFakeDiscordOAuth } from '../fakes/discord-oauth.js';
import {
  csrfToken,
  DAY_MS,
  pageText,
  type SignInResult,
  signIn,
  startWebStack,
  type WebClient,
  type WebResponse,
  type WebStack,
} from '../helpers/web.js';

// ---------------------------------------------------------------------------------------------
// The fake itself: as strict as Discord where the web sign-in depends on it.

describe('the fake Discord OAuth2', () => {
  let oauth: FakeDiscordOAuth;
  const clientId = snowflake();
  const clientSecret = 'fake-client-secret';
  const guildId = snowflake();
  const redirectUri = 'http://127.0.0.1:9/auth/discord/callback';
  const verifier = 'v'.repeat(50);
  const challenge = createHash('sha256').update(verifier).digest('base64url');
  const basic = `Basic ${Buffer.from(`${clientId}:${clientSecret}`).toString('base64')}`;

  beforeAll(async () => {
    oauth = await startFakeDiscordOAuth({ clientId, clientSecret, redirectUris: [redirectUri], guildId });
  });
  afterAll(() => oauth?.close());

  const authorizeQuery = (over: Record<string, string | null> = {}) => {
    const q = new URLSearchParams({
      response_type: 'code',
      client_id: clientId,
      redirect_uri: redirectUri,
      scope: 'identify guilds.members.read',
      state: 'st4te',
      code_challenge: challenge,
      code_challenge_method: 'S256',
    });
    for (const [k, v] of Object.entries(over)) {
      if (v === null) q.delete(k);
      else q.set(k, v);
    }
    return q;
  };
  const authorize = (over?: Record<string, string | null>) =>
    fetch(`${oauth.authorizeUrl}?${authorizeQuery(over)}`, { redirect: 'manual' });
  const tokenCall = (form: Record<string, string>, headers: Record<string, string> = { authorization: basic }) =>
    fetch(oauth.tokenUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
      body: new URLSearchParams(form).toString(),
    });
  async function code(): Promise<string> {
    const res = await authorize();
    expect(res.status).toBe(302);
    const back = new URL(res.headers.get('location')!);
    expect(back.origin + back.pathname).toBe(redirectUri);
    expect(back.searchParams.get('state')).toBe('st4te');
    return back.searchParams.get('code')!;
  }
  const exchangeForm = (c: string) => ({
    grant_type: 'authorization_code',
    code: c,
    redirect_uri: redirectUri,
    code_verifier: verifier,
  });

  it('refuses malformed authorize requests with a page, never a redirect', async () => {
    const user = oauth.createUser({ createdAt: Date.now() - 30 * DAY_MS });
    oauth.loginAs(user.id);
    const bad: Array<Record<string, string | null>> = [
      { client_id: snowflake() },
      { redirect_uri: `${redirectUri}/` },
      { redirect_uri: 'http://127.0.0.1:9/auth/discord/callback?x=1' },
      { response_type: 'token' },
      { scope: 'identify nonsense' },
      { state: null },
      { code_challenge: null },
      { code_challenge_method: 'plain' },
    ];
    for (const over of bad) {
      const res = await authorize(over);
      expect(res.status, JSON.stringify(over)).toBe(400);
      expect(res.headers.get('location')).toBeNull();
    }
    oauth.setMode('deny');
    const denied = new URL((await authorize()).headers.get('location')!);
    oauth.setMode('consent');
    expect(denied.searchParams.get('error')).toBe('access_denied');
    expect(denied.searchParams.get('state')).toBe('st4te');
    expect(denied.searchParams.has('code')).toBe(false);
  });

  it('token: form-encoded only, client auth, single-use codes bound to redirect_uri and PKCE', async () => {
    const json = await fetch(oauth.tokenUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: basic },
      body: JSON.stringify(exchangeForm(await code())),
    });
    expect(json.status).toBe(400);

    const badSecret = await tokenCall(exchangeForm(await code()), {
      authorization: `Basic ${Buffer.from(`${clientId}:nope`).toString('base64')}`,
    });
    expect(badSecret.status).toBe(401);
    expect(await badSecret.json()).toEqual({ error: 'invalid_client' });
    expect((await tokenCall(exchangeForm(await code()), {})).status).toBe(401);

    const wrongVerifier = await tokenCall({ ...exchangeForm(await code()), code_verifier: 'w'.repeat(50) });
    expect(wrongVerifier.status).toBe(400);
    expect(await wrongVerifier.json()).toMatchObject({ error: 'invalid_grant' });
    const wrongRedirect = await tokenCall({ ...exchangeForm(await code()), redirect_uri: 'http://127.0.0.1:9/x' });
    expect(await wrongRedirect.json()).toMatchObject({ error: 'invalid_grant' });
    const stale = await code();
    oauth.expireCodes();
    expect(await (await tokenCall(exchangeForm(stale))).json()).toMatchObject({ error: 'invalid_grant' });

    // Body client auth works as well as Basic.
    const c = await code();
    const ok = await tokenCall({ ...exchangeForm(c), client_id: clientId, client_secret: clientSecret }, {});
    expect(ok.status).toBe(200);
    const t = (await ok.json()) as Record<string, unknown>;
    expect(t).toMatchObject({ token_type: 'Bearer', expires_in: 604800, scope: 'identify guilds.members.read' });
    expect(typeof t.access_token).toBe('string');
    expect(typeof t.refresh_token).toBe('string');
    // Replaying the code fails and kills the tokens it produced.
    const replay = await tokenCall(exchangeForm(c));
    expect(await replay.json()).toMatchObject({ error: 'invalid_grant' });
    const me = await fetch(`${oauth.apiBaseUrl}/v10/users/@me`, {
      headers: { authorization: `Bearer ${t.access_token}` },
    });
    expect(me.status).toBe(401);
    expect(await me.json()).toEqual({ message: '401: Unauthorized', code: 0 });
  });

  it('users/@me and the member route by Bearer; revocation; 429s; non-members 10004', async () => {
    const user = oauth.createUser({ createdAt: Date.now() - 30 * DAY_MS, username: 'fakeuser' });
    oauth.loginAs(user.id);
    const role = snowflake();
    oauth.addMember(user.id, { roles: [role], pending: false });
    const t = (await (await tokenCall(exchangeForm(await code()))).json()) as { access_token: string };
    const bearer = { authorization: `Bearer ${t.access_token}` };
    const me = await fetch(`${oauth.apiBaseUrl}/v10/users/@me`, { headers: bearer });
    expect(await me.json()).toMatchObject({ id: user.id, username: 'fakeuser', discriminator: '0' });
    const member = await fetch(`${oauth.apiBaseUrl}/v10/users/@me/guilds/${guildId}/member`, { headers: bearer });
    expect(await member.json()).toMatchObject({ roles: [role], pending: false, user: { id: user.id } });
    const other = await fetch(`${oauth.apiBaseUrl}/v10/users/@me/guilds/${snowflake()}/member`, { headers: bearer });
    expect(other.status).toBe(404);
    expect(await other.json()).toEqual({ message: 'Unknown Guild', code: 10004 });

    oauth.injectRateLimit({ route: 'users/@me', retryAfter: 0.3 });
    const limited = await fetch(`${oauth.apiBaseUrl}/v10/users/@me`, { headers: bearer });
    expect(limited.status).toBe(429);
    expect(limited.headers.get('retry-after')).toBe('1');
    expect(await limited.json()).toEqual({ message: 'You are being rate limited.', retry_after: 0.3, global: false });
    expect((await fetch(`${oauth.apiBaseUrl}/v10/users/@me`, { headers: bearer })).status).toBe(200);

    oauth.removeMember(user.id);
    const gone = await fetch(`${oauth.apiBaseUrl}/v10/users/@me/guilds/${guildId}/member`, { headers: bearer });
    expect(await gone.json()).toEqual({ message: 'Unknown Guild', code: 10004 });

    const revoke = await fetch(`${oauth.tokenUrl}/revoke`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basic },
      body: new URLSearchParams({ token: t.access_token, token_type_hint: 'access_token' }).toString(),
    });
    expect(revoke.status).toBe(200);
    expect(oauth.revocations.at(-1)).toMatchObject({ matched: 'access_token', clientAuth: 'basic' });
    expect((await fetch(`${oauth.apiBaseUrl}/v10/users/@me`, { headers: bearer })).status).toBe(401);
  });
});

// ---------------------------------------------------------------------------------------------
// The web app

let s: WebStack;
let dataDir: string;
/** Every raw key the dashboard showed, for the leak scan. */
const shownKeys: string[] = [];

function keysIn(res: WebResponse): string[] {
  return findKeysInText(res.text);
}

/** GET /dashboard and whether it is a signed-in dashboard (it offers a logout form). */
async function dashboard(web: WebClient): Promise<{ res: WebResponse; signedIn: boolean }> {
  const res = await web.get('/dashboard');
  for (const k of keysIn(res)) if (!shownKeys.includes(k)) shownKeys.push(k);
  return { res, signedIn: res.status === 200 && /action=["']\/auth\/logout["']/.test(res.text) };
}

async function signedInClient(userId?: string): Promise<{ web: WebClient; flow: SignInResult; userId: string }> {
  const id = userId ?? s.newMember().id;
  const web = s.web();
  const flow = await signIn({ web, oauth: s.oauth, userId: id });
  expect(flow.callback.status, flow.callback.text.slice(0, 500)).toBe(302);
  expect(new URL(flow.callback.location!).pathname).toBe('/dashboard');
  expect(flow.page.status).toBe(200);
  return { web, flow, userId: id };
}

/** POSTs a dashboard form with the page's CSRF token; returns the response. */
async function submit(web: WebClient, path: string, extra: Record<string, string> = {}): Promise<WebResponse> {
  const { res } = await dashboard(web);
  return web.post(path, { _csrf: csrfToken(res.text), ...extra });
}

/** Creates a key from the dashboard and returns the raw key shown on the next dashboard. */
async function createKey(web: WebClient): Promise<string> {
  const res = await submit(web, '/key/create');
  expectSeeOther(res, '/dashboard');
  const { res: page } = await dashboard(web);
  const [key] = keysIn(page);
  if (!key) throw new Error(`no key on the dashboard after creating one:\n${pageText(page.text).slice(0, 1_000)}`);
  return key;
}

/** A post/redirect/get answer: 302 or 303 to `path` on the relay. */
function expectSeeOther(res: WebResponse, path: string): void {
  expect([302, 303], `${res.status} ${res.text.slice(0, 300)}`).toContain(res.status);
  expect(new URL(res.location!).pathname).toBe(path);
}

async function relayStatus(key: string): Promise<number> {
  try {
    await s.relay.client(key).models.list();
    return 200;
  } catch (err) {
    if (err instanceof OpenAI.APIError && err.status) return err.status;
    throw err;
  }
}

async function msUntilRefused(key: string, since: number, timeoutMs: number): Promise<number> {
  for (;;) {
    const code = await relayStatus(key);
    const elapsed = Date.now() - since;
    if (code === 401) return elapsed;
    if (elapsed > timeoutMs) throw new Error(`key still answered ${code} after ${elapsed} ms`);
    await sleep(20);
  }
}

describe('Sign in with Discord and the dashboard over HTTP', () => {
  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'gg-web-http-'));
    // No proxy trusted: X-Forwarded-* from the test client must change nothing here.
    s = await startWebStack({ dataDir, server: { trustProxy: false } });
  });

  afterAll(async () => {
    await s?.stop();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  it('the landing page links to Sign in with Discord', async () => {
    const res = await s.web().get('/');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/html/);
    expect(res.text).toMatch(/<a\b[^>]*href=["']\/auth\/discord["'][^>]*>[\s\S]*?Sign in with Discord/i);
  });

  it('GET /auth/discord sends the browser to Discord with the contract parameters and PKCE', async () => {
    const web = s.web();
    const res = await web.get('/auth/discord');
    expect(res.status).toBe(302);
    const loc = new URL(res.location!);
    expect(`${loc.origin}${loc.pathname}`).toBe(s.oauth.authorizeUrl);
    const q = loc.searchParams;
    expect(q.get('response_type')).toBe('code');
    expect(q.get('client_id')).toBe(s.applicationId);
    expect(q.get('redirect_uri')).toBe(`${s.relay.relay.services.config.publicBaseUrl}/auth/discord/callback`);
    expect(q.get('scope')).toBe('identify guilds.members.read');
    expect(loc.search).toContain('scope=identify%20guilds.members.read');
    expect(q.get('state')?.length ?? 0).toBeGreaterThanOrEqual(16);
    expect(q.get('code_challenge')).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(q.get('code_challenge_method')).toBe('S256');
    // A fresh state and challenge each time.
    const again = new URL((await s.web().get('/auth/discord')).location!).searchParams;
    expect(again.get('state')).not.toBe(q.get('state'));
    expect(again.get('code_challenge')).not.toBe(q.get('code_challenge'));
  });

  it('signs in: code exchanged form-encoded with client auth and the verifier, user and member read, token revoked', async () => {
    const user = s.newMember({ username: 'signin-alice' });
    const before = s.oauth.requests.length;
    const { web, flow } = await signedInClient(user.id);
    expect(pageText(flow.page.text)).toContain('signin-alice');
    const mine = s.oauth.requests.slice(before);

    const exchange = mine.filter((r) => r.route === 'token');
    expect(exchange).toHaveLength(1);
    // Discord takes the client's credentials as HTTP Basic or as client_id + client_secret in the form.
    expect(exchange[0]).toMatchObject({ status: 200, clientAuth: expect.stringMatching(/^(basic|body)$/) });
    expect(exchange[0]!.contentType).toMatch(/^application\/x-www-form-urlencoded/);
    expect(exchange[0]!.body).toMatchObject({
      grant_type: 'authorization_code',
      code: flow.code,
      redirect_uri: flow.authorize.searchParams.get('redirect_uri'),
      code_verifier: expect.stringMatching(/^[A-Za-z0-9._~-]{43,128}$/),
    });
    if (exchange[0]!.clientAuth === 'body') {
      expect(exchange[0]!.body).toMatchObject({ client_id: s.applicationId, client_secret: s.clientSecret });
    } else {
      expect(exchange[0]!.body).not.toHaveProperty('client_secret');
    }

    const issued = s.oauth.tokens.find((t) => t.code === flow.code)!;
    expect(issued).toBeDefined();
    for (const route of ['users/@me', 'member'] as const) {
      const calls = mine.filter((r) => r.route === route);
      expect(calls.length, route).toBeGreaterThanOrEqual(1);
      expect(calls[0]!.headers.authorization).toBe(`Bearer ${issued.accessToken}`);
      expect(calls[0]!.status).toBe(200);
    }
    expect(mine.find((r) => r.route === 'member')!.path).toBe(`/api/v10/users/@me/guilds/${s.guildId}/member`);

    // The access token is revoked once the sign-in has what it needs.
    await s.oauth.waitFor(() => issued.revokedAt !== null, 2_000, 'the access token revoked');
    expect(issued.revokedBy).toBe('revoke');
    expect(s.oauth.revocations.find((r) => r.token === issued.accessToken)).toMatchObject({
      matched: 'access_token',
      clientAuth: expect.stringMatching(/^(basic|body)$/),
    });
    expect(s.oauth.liveTokens(user.id)).toEqual([]);
    expect((await dashboard(web)).signedIn).toBe(true);
  });

  it('a wrong or missing state is refused with a 400 page and does not sign in', async () => {
    s.newMember();
    for (const tamper of [
      (u: URL) => u.searchParams.set('state', 'x'.repeat(43)),
      (u: URL) => u.searchParams.delete('state'),
    ]) {
      const web = s.web();
      const start = await web.get('/auth/discord');
      const hop = await fetch(start.location!, { redirect: 'manual' });
      const back = new URL(hop.headers.get('location')!);
      tamper(back);
      const res = await web.get(back.href);
      expect(res.status).toBe(400);
      expect(res.headers.get('content-type')).toMatch(/^text\/html/);
      expect((await dashboard(web)).signedIn).toBe(false);
    }
    // A callback with no sign-in started at all (no session).
    const stray = await s.web().get('/auth/discord/callback?code=abc&state=def');
    expect(stray.status).toBe(400);
  });

  it('code replay: the callback replayed, or its code under a fresh state, is refused and not signed in', async () => {
    const { web, flow } = await signedInClient();
    const exchanges = s.oauth.requestsTo('token').length;
    // The same browser replays the callback: the state was used up, so Discord is not even asked.
    const same = await web.get(flow.callbackUrl.href);
    expect(same.status).toBe(400);
    // Another browser replays it (a leaked URL): no sign-in of its own, so refused.
    const again = s.web();
    const replayed = await again.get(flow.callbackUrl.href);
    expect(replayed.status).toBe(400);
    expect((await dashboard(again)).signedIn).toBe(false);
    expect(s.oauth.requestsTo('token')).toHaveLength(exchanges);

    // An attacker who saw the code starts their own sign-in and injects it with their own valid state.
    const attacker = s.web();
    const start = new URL((await attacker.get('/auth/discord')).location!);
    const before = s.oauth.requestsTo('token').length;
    const injected = new URL(flow.callbackUrl.href);
    injected.searchParams.set('state', start.searchParams.get('state')!);
    const res = await attacker.get(injected.href);
    expect(res.status).toBeGreaterThanOrEqual(400);
    expect(res.status).toBeLessThan(500);
    expect(res.location).toBeNull();
    expect((await dashboard(attacker)).signedIn).toBe(false);
    const tried = s.oauth.requestsTo('token').slice(before);
    // Either refused before the exchange, or Discord said invalid_grant (the code is single-use).
    for (const r of tried) expect(r.error).toBe('invalid_grant');
  });

  it('CSRF: no token, a forged token or a foreign Origin get 403; a valid token without Origin works', async () => {
    const { web, userId } = await signedInClient();
    const { res } = await dashboard(web);
    const token = csrfToken(res.text);
    const listKeys = () => s.relay.relay.services.store.listKeys({ discordId: userId });

    expect((await web.post('/key/create', {})).status).toBe(403);
    expect((await web.post('/key/create', { _csrf: `${token.slice(0, -2)}xx` })).status).toBe(403);
    expect((await web.post('/key/create', { _csrf: 'forged' })).status).toBe(403);
    const foreign = await web.post('/key/create', { _csrf: token }, { origin: 'https://evil.example' });
    expect(foreign.status).toBe(403);
    expect((await web.post('/key/create', { _csrf: token }, { origin: 'null' })).status).toBe(403);
    // Another session's token is not this session's.
    const other = await signedInClient();
    const otherToken = csrfToken((await dashboard(other.web)).res.text);
    expect((await web.post('/key/create', { _csrf: otherToken })).status).toBe(403);
    expect(await listKeys()).toEqual([]);

    const ok = await web.post('/key/create', { _csrf: token }, { origin: null });
    expectSeeOther(ok, '/dashboard');
    expect(await listKeys()).toHaveLength(1);
    const shown = keysIn((await dashboard(web)).res);
    expect(shown).toHaveLength(1);
  });

  it('session fixation: the pre-login cookie is not signed in after login', async () => {
    const { web, flow } = await signedInClient();
    expect(flow.preLoginCookie, 'GET /auth/discord should start a session (gg.sid)').toBeDefined();
    expect(web.cookie('gg.sid')).toBeDefined();
    expect(web.cookie('gg.sid')).not.toBe(flow.preLoginCookie);
    const fixed = s.web();
    fixed.setCookie('gg.sid', flow.preLoginCookie!);
    expect((await dashboard(fixed)).signedIn).toBe(false);
    expect((await dashboard(web)).signedIn).toBe(true);
  });

  it('cookie flags: HttpOnly, SameSite=Lax, no Secure over http', async () => {
    const { web } = await signedInClient();
    const sid = web.received.filter((c) => c.name === 'gg.sid');
    expect(sid.length).toBeGreaterThan(0);
    for (const c of sid) {
      expect(c.attributes.httponly, c.raw).toBe(true);
      expect(String(c.attributes.samesite).toLowerCase(), c.raw).toBe('lax');
      expect(c.attributes.secure, c.raw).toBeUndefined();
      expect(c.attributes.path ?? '/', c.raw).toBe('/');
    }
    // X-Forwarded-Proto from an untrusted peer (trustProxy off here) changes nothing.
    const spoofed = await s.web().get('/auth/discord', { headers: { 'x-forwarded-proto': 'https' } });
    const c = spoofed.setCookies.find((x) => x.name === 'gg.sid');
    expect(c, 'GET /auth/discord sets gg.sid').toBeDefined();
    expect(c!.attributes.secure).toBeUndefined();
  });

  it('Secure when X-Forwarded-Proto: https comes through a trusted proxy (by default one on loopback)', async () => {
    const proxied = await startWebStack({
      oauth: s.oauth,
      upstream: s.upstream,
      secrets: { clientSecret: s.clientSecret, sessionSecret: s.sessionSecret },
    });
    try {
      const https = { headers: { 'x-forwarded-proto': 'https', 'x-forwarded-for': '203.0.113.7' } };
      const res = await proxied.web().get('/auth/discord', https);
      const c = res.setCookies.find((x) => x.name === 'gg.sid');
      expect(c, 'GET /auth/discord sets gg.sid').toBeDefined();
      expect(c!.attributes.secure, c!.raw).toBe(true);
      expect(c!.attributes.httponly).toBe(true);
      expect(String(c!.attributes.samesite).toLowerCase()).toBe('lax');
      // The same relay over plain http: no Secure.
      const plain = (await proxied.web().get('/auth/discord')).setCookies.find((x) => x.name === 'gg.sid');
      expect(plain?.attributes.secure).toBeUndefined();
    } finally {
      await proxied.stop();
    }
  });

  it('logout: POST /auth/logout with the token ends the session; the old cookie is not signed in', async () => {
    const { web } = await signedInClient();
    const stolen = web.clone();
    expect((await dashboard(stolen)).signedIn).toBe(true);
    expect((await web.post('/auth/logout', {})).status).toBe(403);
    const out = await submit(web, '/auth/logout');
    expectSeeOther(out, '/');
    expect((await dashboard(web)).signedIn).toBe(false);
    expect((await dashboard(stolen)).signedIn).toBe(false);
  });

  it('gate refusals are readable pages naming the gate', async () => {
    const cases: Array<{ what: string; user: () => string; says: RegExp }> = [
      { what: 'not a member', user: () => s.newMember({ member: null }).id, says: /member of the Discord server/i },
      {
        what: 'account too new',
        user: () => s.newMember({ createdAt: Date.now() - 2 * DAY_MS }).id,
        says: /at least 7 days old/i,
      },
      { what: 'missing role', user: () => s.newMember({ member: { roles: [] } }).id, says: /role/i },
      { what: 'screening pending', user: () => s.newMember({ member: { pending: true } }).id, says: /screening/i },
    ];
    for (const c of cases) {
      const userId = c.user();
      const web = s.web();
      const flow = await signIn({ web, oauth: s.oauth, userId });
      // Either the sign-in itself is refused, or the dashboard refuses the key: a page that says why.
      let page = flow.page;
      if (page.status === 200 && (await dashboard(web)).signedIn) {
        const res = await submit(web, '/key/create');
        page = res.location?.startsWith(web.origin) ? await web.follow(res.location) : res;
      }
      expect(page.headers.get('content-type'), c.what).toMatch(/^text\/html/);
      expect(pageText(page.text), c.what).toMatch(c.says);
      expect(page.text, c.what).not.toMatch(/at [\w.]+ \(|node_modules|Error:/);
      expect(await s.relay.relay.services.store.listKeys({ discordId: userId }), c.what).toEqual([]);
    }
  });

  it('Discord rate limits during sign-in: a short retry_after is waited out, a long one is a readable 503 page', async () => {
    s.newMember({ username: 'patient-pat' });
    s.oauth.injectRateLimit({ route: 'member', retryAfter: 0.3 });
    const started = Date.now();
    const ok = await signIn({ web: s.web(), oauth: s.oauth });
    expect(Date.now() - started).toBeGreaterThanOrEqual(300);
    expect(ok.callback.status).toBe(302);
    expect(pageText(ok.page.text)).toContain('patient-pat');

    s.oauth.injectRateLimit({ route: 'token', retryAfter: 60 });
    const web = s.web();
    const busy = await signIn({ web, oauth: s.oauth });
    expect(busy.callback.status).toBe(503);
    expect(busy.callback.headers.get('content-type')).toMatch(/^text\/html/);
    expect(pageText(busy.callback.text)).toMatch(/discord/i);
    expect((await dashboard(web)).signedIn).toBe(false);
  });

  it('access_denied at Discord comes back as a plain page, not signed in', async () => {
    s.newMember();
    s.oauth.setMode('deny');
    try {
      const web = s.web();
      const flow = await signIn({ web, oauth: s.oauth });
      expect(flow.callbackUrl.searchParams.get('error')).toBe('access_denied');
      expect(flow.callback.status).toBeLessThan(500);
      expect(flow.page.status).toBeLessThan(500);
      expect(flow.page.headers.get('content-type')).toMatch(/^text\/html/);
      expect(pageText(flow.page.text)).toMatch(/cancel|denied|did not|didn't|not authori[sz]e/i);
      expect((await dashboard(web)).signedIn).toBe(false);
    } finally {
      s.oauth.setMode('consent');
    }
  });

  it('the raw key appears in exactly one dashboard response, and works with the openai client', async () => {
    const { web } = await signedInClient();
    const responses: WebResponse[] = [];
    const create = await submit(web, '/key/create');
    responses.push(create);
    expectSeeOther(create, '/dashboard');
    for (let i = 0; i < 3; i++) responses.push((await dashboard(web)).res);
    responses.push(await web.get('/privacy/export'));
    const withKey = responses.filter((r) => keysIn(r).length > 0);
    expect(withKey).toHaveLength(1);
    expect(withKey[0]).toBe(responses[1]);
    const [key] = keysIn(withKey[0]!);
    expect(keysIn(withKey[0]!)).toEqual([key]);
    const chat = await s.relay.client(key!).chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'hello from the dashboard' }],
    });
    expect(chat.choices[0]?.message.content).toBeTruthy();
    // The page that showed the key must not be cached.
    expect(withKey[0]!.headers.get('cache-control')).toMatch(/no-store/);
  });

  it('rotate shows a new key once and the old one stops; revoke stops it', async () => {
    const { web } = await signedInClient();
    const first = await createKey(web);
    expect(await relayStatus(first)).toBe(200);
    expectSeeOther(await submit(web, '/key/rotate'), '/dashboard');
    const { res } = await dashboard(web);
    const [second] = keysIn(res);
    expect(second).toBeDefined();
    expect(second).not.toBe(first);
    expect(keysIn((await dashboard(web)).res)).toEqual([]);
    expect(await msUntilRefused(first, Date.now(), 1_000)).toBeLessThanOrEqual(1_000);
    expect(await relayStatus(second!)).toBe(200);
    expectSeeOther(await submit(web, '/key/revoke'), '/dashboard');
    expect(await msUntilRefused(second!, Date.now(), 1_000)).toBeLessThanOrEqual(1_000);
  });

  it('export: a JSON attachment without the raw key or its hash', async () => {
    const { web, userId } = await signedInClient();
    const key = await createKey(web);
    await s.relay
      .client(key)
      .chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] });
    const res = await web.get('/privacy/export');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    expect(res.headers.get('content-disposition')).toMatch(/^attachment/);
    const data = JSON.parse(res.text) as Record<string, unknown>;
    expect(JSON.stringify(data)).toContain(userId);
    expect(res.text).not.toContain(key);
    expect(res.text).not.toContain(hashKey(key));
    expect(findKeysInText(res.text)).toEqual([]);
    // Signed out: no export.
    const anon = await s.web().get('/privacy/export');
    expect(anon.status === 200 && anon.text.includes(userId)).toBe(false);
  });

  it('delete: needs the token and confirm=DELETE; the key is refused within 1 s; a new sign-in starts empty', async () => {
    const { web, userId } = await signedInClient();
    const key = await createKey(web);
    await s.relay
      .client(key)
      .chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'y' }] });
    const store = s.relay.relay.services.store;
    await expect.poll(async () => (await store.listUsage(userId, 10)).length, { timeout: 2_000 }).toBeGreaterThan(0);

    expect((await web.post('/privacy/delete', { confirm: 'DELETE' })).status).toBe(403);
    const unconfirmed = await submit(web, '/privacy/delete', { confirm: 'delete me' });
    expect(unconfirmed.status).toBeGreaterThanOrEqual(300);
    expect(await relayStatus(key)).toBe(200);

    const since = Date.now();
    const res = await submit(web, '/privacy/delete', { confirm: 'DELETE' });
    expect(res.status).toBeLessThan(400);
    expect(await msUntilRefused(key, since, 1_000)).toBeLessThanOrEqual(1_000);
    expect(await store.getUser(userId)).toBeNull();
    expect(await store.listKeys({ discordId: userId })).toEqual([]);
    expect(await store.listUsage(userId, 10)).toEqual([]);

    const again = await signedInClient(userId);
    const page = (await dashboard(again.web)).res;
    expect(keysIn(page)).toEqual([]);
    expect(page.text).not.toContain(key.slice(0, 9));
    expect(await store.listKeys({ discordId: userId })).toEqual([]);
    expect(await store.listUsage(userId, 10)).toEqual([]);
  });

  it('/privacy and /terms are pages; unknown paths get a 404 page; /v1 keeps OpenAI errors', async () => {
    for (const path of ['/privacy', '/terms']) {
      const res = await s.web().get(path);
      expect(res.status, path).toBe(200);
      expect(res.headers.get('content-type'), path).toMatch(/^text\/html/);
    }
    const missing = await s.web().get('/no/such/page');
    expect(missing.status).toBe(404);
    expect(missing.headers.get('content-type')).toMatch(/^text\/html/);
    // /v1 stays the API's: OpenAI-shaped JSON errors, never the web's pages.
    const anon = await fetch(`${s.url}/v1/nope`);
    expect(anon.status).toBe(401);
    expect(anon.headers.get('content-type')).toMatch(/^application\/json/);
    expect(await anon.json()).toMatchObject({ error: { message: expect.any(String), type: expect.any(String) } });
    const { key } = await s.relay.issue();
    shownKeys.push(key);
    const api = await fetch(`${s.url}/v1/nope`, { headers: { authorization: `Bearer ${key}` } });
    expect(api.status).toBe(404);
    expect(api.headers.get('content-type')).toMatch(/^application\/json/);
    expect(await api.json()).toMatchObject({ error: { message: expect.any(String), type: expect.any(String) } });
  });

  it('after stopping the relay, no raw key, client secret, session secret or OAuth token is in a log or data file', async () => {
    await s.relay.stop();
    const logs = s.relay.logs.join('\n');
    const files = readdirSync(dataDir)
      .filter((f) => statSync(join(dataDir, f)).isFile())
      .map((f) => ({ f, bytes: readFileSync(join(dataDir, f)) }));
    expect(files.some((x) => x.f.endsWith('.db'))).toBe(true);
    expect(shownKeys.length).toBeGreaterThanOrEqual(5);
    const oauthTokens = s.oauth.tokens.flatMap((t) => [t.accessToken, t.refreshToken]);
    expect(oauthTokens.length).toBeGreaterThan(0);
    const secrets: Array<[string, string]> = [
      ...shownKeys.map((k): [string, string] => ['raw key', k]),
      ['client secret', s.clientSecret],
      ['session secret', s.sessionSecret],
      ...oauthTokens.map((t): [string, string] => ['OAuth token', t]),
      ...[...s.oauth.codes.keys()].map((c): [string, string] => ['authorization code', c]),
    ];
    for (const [what, secret] of secrets) {
      expect(logs.includes(secret), `${what} in the logs`).toBe(false);
      for (const { f, bytes } of files) expect(bytes.includes(Buffer.from(secret)), `${what} in ${f}`).toBe(false);
    }
  });
});
