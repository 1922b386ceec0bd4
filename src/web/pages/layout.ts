// The frame of every page: header with navigation, main content, footer with the legal pages.
import { ASSETS } from '../assets/index.js';
import { type Html, html } from '../html.js';
import type { WebUser } from '../session.js';

export interface Frame {
  title: string;
  user: WebUser | null;
  /** The session's CSRF token when a signed-in page needs the sign-out form. */
  csrf: string | null;
  notice?: string | null;
}

/** A POST form carrying the CSRF token. */
export function postForm(action: string, csrf: string, inner: Html, cls = ''): Html {
  return html`<form method="post" action="${action}"${cls ? html` class="${cls}"` : ''}>
<input type="hidden" name="_csrf" value="${csrf}">${inner}</form>`;
}

export function layout(frame: Frame, body: Html): Html {
  const { user, csrf } = frame;
  const nav = user
    ? html`<li><a href="/dashboard">Dashboard</a></li>
<li>${csrf ? postForm('/auth/logout', csrf, html`<button type="submit" class="link">Sign out</button>`, 'inline') : ''}</li>`
    : html`<li><a href="/auth/discord">Sign in with Discord</a></li>`;
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${frame.title} · Guildgate</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="${ASSETS.style}">
<script src="${ASSETS.script}" defer></script>
</head>
<body>
<a class="skip" href="#main">Skip to content</a>
<header class="site">
<a class="brand" href="/">Guildgate</a>
<nav aria-label="Main"><ul>${nav}</ul></nav>
</header>
<main id="main">
${frame.notice ? html`<p class="notice" role="status">${frame.notice}</p>` : ''}
${body}
<p id="copy-status" class="sr-only" aria-live="polite"></p>
</main>
<footer class="site">
<ul><li><a href="/privacy">Privacy</a></li><li><a href="/terms">Terms</a></li><li><a href="/">Home</a></li></ul>
</footer>
</body>
</html>`;
}
