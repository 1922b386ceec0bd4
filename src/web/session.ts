// Browser sessions: what a session holds, and where it lives. Redis when the relay has it (every
// replica sees every session), else the embedded SQLite file; never process memory, which would log
// everyone out on restart and split sessions between replicas.
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { RedisStore } from 'connect-redis';
import type { RequestHandler } from 'express';
import session from 'express-session';
import { sqliteFile } from '../container.js';
import type { Services } from '../services.js';
import type { MemberSnapshot } from './discord-oauth.js';
import { SqliteSessionStore } from './session-store.js';

export const SESSION_COOKIE = 'gg.sid';

/** Who is signed in, as Discord described them at sign-in. No Discord token is kept. */
export interface WebUser {
  discordId: string;
  username: string;
  displayName: string;
  /** Membership in the configured server at sign-in; null: not a member then. */
  member: MemberSnapshot | null;
  /** Epoch ms of the sign-in, which is also when `member` was read. */
  signedInAt: number;
}

declare module 'express-session' {
  interface SessionData {
    /** Between /auth/discord and its callback: when the sign-in started and what for. */
    signIn: { startedAt: number; purpose: 'sign-in' | 'create-key' };
    /** Between /auth/discord and its callback: passport-oauth2's state handle and PKCE verifier. */
    oauth: unknown;
    user: WebUser;
    csrf: string;
    /** A new key, sealed, for the next dashboard only (see key-flash.ts). */
    keyFlash: { sealed: string; until: number; intro: string | null };
    /** One line for the next page. */
    notice: string;
  }
}

export interface Sessions {
  middleware: RequestHandler;
  close(): Promise<void>;
}

export function createSessions(s: Services, secret: string, ttlMs: number): Sessions {
  let store: session.Store;
  let close = async () => {};
  if (s.redis) {
    // The client belongs to the limits, which close it.
    store = new RedisStore({ client: s.redis, prefix: 'gg:sess:' });
  } else {
    const file = sqliteFile(s.config);
    // With MongoDB and no Redis the file holds the sessions alone, and may not exist yet.
    mkdirSync(dirname(file), { recursive: true });
    // With the SQLite store on the same file, its checkpoint thread checkpoints for this connection too.
    const sqlite = new SqliteSessionStore(file, ttlMs, { checkpointedElsewhere: s.backends.store === 'sqlite' });
    store = sqlite;
    close = async () => sqlite.close();
  }
  const middleware = session({
    name: SESSION_COOKIE,
    secret,
    store,
    resave: false,
    saveUninitialized: false,
    rolling: true,
    // `auto`: Secure when the request came over https (express's `trust proxy` decides for proxies).
    cookie: { httpOnly: true, sameSite: 'lax', secure: 'auto', maxAge: ttlMs, path: '/' },
  });
  return { middleware, close };
}
