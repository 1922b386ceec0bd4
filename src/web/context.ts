// What the web's route modules share: the services, the Discord settings, and helpers for the
// signed-in member and the page frame.
import type { Request, Response } from 'express';
import type { DiscordConfig } from '../config/schema.js';
import type { Services } from '../services.js';
import { csrfToken } from './csrf.js';
import type { OAuthSettings } from './discord-oauth.js';
import type { KeySealer } from './key-flash.js';
import { takeNotice } from './notice.js';
import type { Frame } from './pages/layout.js';
import type { WebUser } from './session.js';

export interface WebDeps {
  s: Services;
  discord: DiscordConfig;
  oauth: OAuthSettings;
  sealer: KeySealer;
}

export function signedIn(req: Request): WebUser | null {
  return req.session?.user ?? null;
}

/** The page frame: who is signed in, the CSRF token their forms need, and any pending notice. */
export function frameFor(req: Request, res: Response, title: string): Frame {
  const user = signedIn(req);
  return { title, user, csrf: user ? csrfToken(req) : null, notice: takeNotice(req, res) };
}

/** `req.session.regenerate` / `destroy` as promises. */
export function regenerate(req: Request): Promise<void> {
  return new Promise((resolve, reject) => req.session.regenerate((err) => (err ? reject(err) : resolve())));
}

export function destroy(req: Request): Promise<void> {
  return new Promise((resolve, reject) => req.session.destroy((err) => (err ? reject(err) : resolve())));
}
