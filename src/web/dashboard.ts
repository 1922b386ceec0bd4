// The dashboard and the key actions on it. Actions answer with a redirect back to the dashboard
// (post/redirect/get), so a reload never repeats them; a new key rides along sealed, shown once.
import { type Request, type Response, Router } from 'express';
import { findLiveKey, issueKey, revokeKey, rotateKey, tierForRoles } from '../app/keys.js';
import { usageByModel } from '../app/usage-history.js';
import { tierOf, usageSummary } from '../app/usage-summary.js';
import { firstChatModel } from '../domain/model-access.js';
import type { KeyRecord } from '../domain/types.js';
import { frameFor, signedIn, type WebDeps } from './context.js';
import { gateRefusal } from './gate-refusal.js';
import { KEY_FLASH_MS } from './key-flash.js';
import { dashboardPage } from './pages/dashboard.js';
import { PageError, sendPage } from './respond.js';
import type { WebUser } from './session.js';

/**
 * Membership facts older than this are not trusted to create a key: the member signs in again so
 * Discord is asked afresh (the sign-in token was revoked, so there is no other way to ask).
 */
const FACTS_MAX_AGE_MS = 10 * 60_000;

const toDashboard = [{ href: '/dashboard', label: 'Back to your dashboard' }];

function suspended(key: KeyRecord): PageError {
  const why = key.statusReason ? ` (${key.statusReason})` : '';
  return new PageError(
    403,
    'Your key is suspended',
    `Your key ${key.prefix}… is suspended${why}. Ask a moderator if you think this is wrong.`,
    toDashboard,
  );
}

/** The signed-in member for a key action; anyone else goes back to the home page. */
function member(req: Request, res: Response): WebUser | null {
  const user = signedIn(req);
  if (!user) res.redirect(302, '/');
  return user;
}

export function dashboardRoutes(d: WebDeps): Router {
  const router = Router();
  const { config } = d.s;
  const actor = (u: WebUser) => `web:${u.discordId}`;

  const flash = (req: Request, key: string, intro: string | null) => {
    req.session.keyFlash = { sealed: d.sealer.seal(key), until: d.s.now().getTime() + KEY_FLASH_MS, intro };
  };

  /** The key made by the previous request, removed from the session as it is read. */
  const takeFlash = (req: Request) => {
    const f = req.session.keyFlash;
    if (!f) return null;
    delete req.session.keyFlash;
    const key = f.until > d.s.now().getTime() ? d.sealer.open(f.sealed) : null;
    return key === null ? null : { key, intro: f.intro };
  };

  router.get('/dashboard', async (req, res) => {
    const user = signedIn(req);
    if (!user) return res.redirect(302, '/');
    const now = d.s.now();
    const [key, summary, history] = await Promise.all([
      findLiveKey(d.s, user.discordId),
      usageSummary(d.s, user.discordId, now),
      usageByModel(d.s, user.discordId, now),
    ]);
    const { tier } = tierOf(config, summary.tier);
    const frame = frameFor(req, res, 'Dashboard');
    sendPage(
      res,
      dashboardPage(frame, {
        user,
        csrf: frame.csrf!,
        key,
        newKey: takeFlash(req),
        summary,
        history,
        tier,
        baseUrl: `${config.publicBaseUrl}/v1`,
        exampleModel: firstChatModel(config.models, tier) ?? 'MODEL_NAME',
        timeZone: config.limits.budgetTimeZone,
        now,
      }),
    );
  });

  router.post('/key/create', async (req, res) => {
    const user = member(req, res);
    if (!user) return;
    if (d.s.now().getTime() - user.signedInAt > FACTS_MAX_AGE_MS) {
      return res.redirect(302, '/auth/discord?then=create-key');
    }
    const m = user.member;
    const r = await issueKey(d.s.keys, {
      discordId: user.discordId,
      actor: actor(user),
      tier: m ? tierForRoles(d.discord.roleTiers, m.roleIds) : undefined,
      member: {
        discordId: user.discordId,
        member: m && { pending: m.pending, roleIds: m.roleIds, joinedAt: m.joinedAt ? new Date(m.joinedAt) : null },
      },
    });
    if (r.ok) {
      flash(req, r.key, null);
      return res.redirect(302, '/dashboard');
    }
    if (r.code === 'GATE_FAILED') throw gateRefusal(r.gate, r.message);
    if (r.code === 'BANNED') {
      throw new PageError(403, 'Banned from the relay', 'You are banned from the relay and cannot get a key.');
    }
    if (r.code === 'KEY_EXISTS') {
      if (r.existing?.status === 'suspended') throw suspended(r.existing);
      const which = r.existing ? ` (${r.existing.prefix}…)` : '';
      throw new PageError(
        409,
        'You already have a key',
        `You already have a key${which}. Rotate it on your dashboard to get a new one.`,
        toDashboard,
      );
    }
    throw new PageError(409, 'No key created', r.message, toDashboard);
  });

  router.post('/key/rotate', async (req, res) => {
    const user = member(req, res);
    if (!user) return;
    const key = await findLiveKey(d.s, user.discordId);
    if (!key) throw new PageError(409, 'No key to rotate', 'You have no key to rotate. Create one first.', toDashboard);
    if (key.status === 'suspended') throw suspended(key);
    const r = await rotateKey(d.s.keys, { keyId: key.id, actor: actor(user) });
    if (!r.ok) throw new PageError(409, 'Key not rotated', r.message, toDashboard);
    flash(req, r.key, `Your old key ${key.prefix}… stopped working.`);
    res.redirect(302, '/dashboard');
  });

  router.post('/key/revoke', async (req, res) => {
    const user = member(req, res);
    if (!user) return;
    const key = await findLiveKey(d.s, user.discordId);
    if (!key) throw new PageError(409, 'No key to revoke', 'You have no key to revoke.', toDashboard);
    if (key.status === 'suspended') throw suspended(key);
    const r = await revokeKey(d.s.keys, { keyId: key.id, actor: actor(user), reason: 'revoked by owner' });
    if (!r.ok) throw new PageError(409, 'Key not revoked', r.message, toDashboard);
    req.session.notice = `Your key ${key.prefix}… is revoked and stopped working. Create a new one whenever you like.`;
    res.redirect(302, '/dashboard');
  });

  return router;
}
