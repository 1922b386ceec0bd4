// One-line notices for the next page. Signed in, they ride in the session; after sign-out or
// deletion there is no session left, so a short-lived cookie carries a fixed code instead (never
// free text, so the cookie cannot be used to put words on the page).
import type { Request, Response } from 'express';

const COOKIE = 'gg.notice';

const ENDED = {
  'signed-out': 'You are signed out.',
  deleted: 'Your data was deleted: your user record, keys and usage history. Your session has ended.',
  'nothing-stored': 'Guildgate stored nothing about you, so there was nothing to delete. Your session has ended.',
} as const;

export type EndNotice = keyof typeof ENDED;

/** For the page after a session ended (the response should redirect). */
export function noticeAfterSession(req: Request, res: Response, code: EndNotice): void {
  res.cookie(COOKIE, code, { httpOnly: true, sameSite: 'lax', secure: req.secure, maxAge: 60_000, path: '/' });
}

/** The pending notice, if any, removed so it is shown once. */
export function takeNotice(req: Request, res: Response): string | null {
  const code = new RegExp(`(?:^|;\\s*)${COOKIE.replace('.', '\\.')}=([\\w-]+)`).exec(req.get('cookie') ?? '')?.[1];
  if (code) res.clearCookie(COOKIE, { path: '/' });
  if (code && Object.hasOwn(ENDED, code)) return ENDED[code as EndNotice];
  const notice = req.session?.notice ?? null;
  if (notice !== null) delete req.session.notice;
  return notice;
}
