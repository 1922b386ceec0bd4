// The web face: Sign in with Discord and the member dashboard. server.ts imports this only when the
// web is configured, and mounts the router beside /v1 (the API never passes through it).
import express, { type ErrorRequestHandler, Router } from 'express';
import helmet from 'helmet';
import { AppError } from '../domain/errors.js';
import type { Services } from '../services.js';
import { assetRouter } from './assets/index.js';
import { authRoutes } from './auth.js';
import { frameFor, type WebDeps } from './context.js';
import { csrfGuard, originCheck } from './csrf.js';
import { dashboardRoutes } from './dashboard.js';
import { KeySealer } from './key-flash.js';
import { landingPage } from './pages/landing.js';
import { messagePage } from './pages/message.js';
import { privacyRoutes } from './privacy.js';
import { PageError, sendPage } from './respond.js';
import { createSessions } from './session.js';

export interface Web {
  router: Router;
  close(): Promise<void>;
}

function securityHeaders(config: Services['config']) {
  const https = config.publicBaseUrl.startsWith('https:');
  return helmet({
    contentSecurityPolicy: {
      useDefaults: false,
      directives: {
        defaultSrc: ["'self'"],
        scriptSrc: ["'self'"],
        styleSrc: ["'self'"],
        imgSrc: ["'self'", 'data:'],
        objectSrc: ["'none'"],
        baseUri: ["'none'"],
        frameAncestors: ["'none'"],
        // Discord's origin too: a stale /key/create redirects through /auth/discord to Discord, and
        // browsers hold a form's redirects to form-action.
        formAction: ["'self'", new URL(config.web.authorizeUrl).origin],
      },
    },
    // `no-referrer` (helmet's default) would make browsers send `Origin: null` on our own forms.
    referrerPolicy: { policy: 'same-origin' },
    strictTransportSecurity: https ? { maxAge: 180 * 86_400, includeSubDomains: false } : false,
    xFrameOptions: { action: 'deny' },
  });
}

function errorPage(log: Services['log']): ErrorRequestHandler {
  return (err, req, res, _next) => {
    if (res.headersSent) {
      res.destroy();
      return;
    }
    if (err instanceof PageError) {
      return sendPage(res, messagePage(frameFor(req, res, err.title), err.detail, err.actions), err.status);
    }
    // A backing service busy or down (the store locked by another process, Redis unreachable).
    if (err instanceof AppError && err.status === 503) {
      const frame = frameFor(req, res, 'Try again shortly');
      return sendPage(res, messagePage(frame, err.message), 503);
    }
    // Body parser refusals (malformed or oversized forms) are the client's doing.
    const status = Number((err as { status?: unknown }).status);
    if (status >= 400 && status < 500) {
      return sendPage(res, messagePage(frameFor(req, res, 'Bad request'), 'The request could not be read.'), status);
    }
    const requestId = String(res.locals.requestId ?? 'unknown');
    log.error({ err, requestId }, 'unhandled web error');
    const frame = { title: 'Something went wrong', user: null, csrf: null };
    sendPage(
      res,
      messagePage(
        frame,
        `The server had an error. If it keeps happening, tell the operators this request id: ${requestId}.`,
      ),
      500,
    );
  };
}

export async function createWeb(s: Services): Promise<Web> {
  const { config } = s;
  const discord = config.discord!;
  const secret = config.env.sessionSecret!;
  const redirectUri = `${config.publicBaseUrl}/auth/discord/callback`;
  const sessions = createSessions(s, secret, config.web.sessionTtlMs);
  const d: WebDeps = {
    s,
    discord,
    oauth: {
      clientId: discord.applicationId,
      clientSecret: config.env.discordClientSecret!,
      authorizeUrl: config.web.authorizeUrl,
      tokenUrl: config.web.tokenUrl,
      apiBaseUrl: discord.apiBaseUrl.replace(/\/+$/, ''),
      redirectUri,
      guildId: discord.guildId,
    },
    sealer: new KeySealer(secret),
  };

  const router = Router();
  router.use(securityHeaders(config));
  // Before the session: stylesheets and scripts need none.
  router.use(assetRouter());
  router.use(sessions.middleware);
  router.use(express.urlencoded({ extended: false, limit: '16kb' }));
  router.use(csrfGuard(originCheck(config.server.publicBaseUrl ? new URL(config.publicBaseUrl).origin : null)));
  router.get('/', (req, res) => sendPage(res, landingPage(frameFor(req, res, 'Home'), config)));
  router.use(authRoutes(d));
  router.use(dashboardRoutes(d));
  router.use(privacyRoutes(d));
  router.use((req, res) => {
    sendPage(
      res,
      messagePage(frameFor(req, res, 'Page not found'), 'There is no page at this address.', [
        { href: '/', label: 'Go to the home page' },
      ]),
      404,
    );
  });
  router.use(errorPage(s.log));
  s.log.info({ redirectUri }, 'web sign-in enabled; register this redirect URI in the Discord Developer Portal');
  if (!config.server.publicBaseUrl) {
    s.log.warn(
      'server.publicBaseUrl is not set: the sign-in redirect URI is the listen address, set it to where members reach the relay',
    );
  }
  return { router, close: sessions.close };
}
