// The member's own data (export, deletion) and the privacy and terms pages.
import { Router } from 'express';
import { deleteUser, exportUserData, selfDeletionHold } from '../app/users.js';
import { destroy, frameFor, signedIn, type WebDeps } from './context.js';
import { noticeAfterSession } from './notice.js';
import { LEGAL_TITLES, type LegalPage, legalPage } from './pages/legal.js';
import { PageError, sendPage } from './respond.js';
import { SESSION_COOKIE } from './session.js';

const toDashboard = [{ href: '/dashboard', label: 'Back to your dashboard' }];

export function privacyRoutes(d: WebDeps): Router {
  const router = Router();

  router.get('/privacy/export', async (req, res) => {
    const user = signedIn(req);
    if (!user) return res.redirect(302, '/');
    const data = (await exportUserData(d.s, user.discordId)) ?? {
      exportedAt: d.s.now().toISOString(),
      user: null,
      keys: [],
      usage: [],
      note: 'Guildgate stores nothing about you.',
    };
    res
      .set('cache-control', 'no-store')
      .attachment(`guildgate-export-${user.discordId}.json`)
      .type('application/json')
      .send(`${JSON.stringify(data, null, 2)}\n`);
  });

  router.post('/privacy/delete', async (req, res) => {
    const user = signedIn(req);
    if (!user) return res.redirect(303, '/');
    if ((req.body as Record<string, unknown> | undefined)?.confirm !== 'DELETE') {
      throw new PageError(
        400,
        'Nothing was deleted',
        'To delete your data, type DELETE (in capital letters) in the confirmation field.',
        toDashboard,
      );
    }
    const hold = await selfDeletionHold(d.s, user.discordId);
    if (hold) throw new PageError(403, 'Nothing was deleted', hold, toDashboard);
    const r = await deleteUser(d.s, { discordId: user.discordId, actor: `web:${user.discordId}` });
    await destroy(req);
    res.clearCookie(SESSION_COOKIE, { path: '/' });
    noticeAfterSession(req, res, r.ok ? 'deleted' : 'nothing-stored');
    res.redirect(303, '/');
  });

  for (const page of ['privacy', 'terms'] as LegalPage[]) {
    router.get(`/${page}`, async (req, res) => {
      sendPage(res, await legalPage(frameFor(req, res, LEGAL_TITLES[page]), d.s.config, page));
    });
  }

  return router;
}
