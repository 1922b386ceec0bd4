// `/dashboard`: the signed-in member's key, today's budget, 30 days of usage, examples, their data.

import type { UsageByModel } from '../../app/usage-history.js';
import type { UsageSummary } from '../../app/usage-summary.js';
import type { KeyRecord } from '../../domain/types.js';
import { usageChart } from '../chart.js';
import { type Html, html } from '../html.js';
import type { WebUser } from '../session.js';
import { type Frame, layout, postForm } from './layout.js';
import { quickStart } from './quick-start.js';

export interface DashboardView {
  user: WebUser;
  csrf: string;
  key: KeyRecord | null;
  /** A key made by the previous request, shown this once. */
  newKey: { key: string; intro: string | null } | null;
  summary: UsageSummary;
  history: UsageByModel;
  tier: { rpm: number; maxConcurrent: number };
  baseUrl: string;
  exampleModel: string;
  timeZone: string;
  now: Date;
}

const num = (n: number) => n.toLocaleString('en-US');

/** A time as the budget's zone sees it, plus how far away it is. */
export function when(at: Date, timeZone: string, now: Date): string {
  const text = new Intl.DateTimeFormat('en-GB', { timeZone, dateStyle: 'medium', timeStyle: 'short' }).format(at);
  const minutes = Math.max(0, Math.round((at.getTime() - now.getTime()) / 60_000));
  const rel = minutes >= 60 ? `${Math.floor(minutes / 60)} h ${minutes % 60} min` : `${minutes} min`;
  return `${text} (${timeZone}), in ${rel}`;
}

const date = (d: Date, timeZone: string) =>
  new Intl.DateTimeFormat('en-GB', { timeZone, dateStyle: 'medium', timeStyle: 'short' }).format(d);

function membership(u: WebUser, timeZone: string): string {
  const m = u.member;
  if (!m) return 'Not a member of the server when you signed in.';
  const since = m.joinedAt ? ` since ${date(new Date(m.joinedAt), timeZone)}` : '';
  return `Member of the server${since}${m.pending ? ', membership screening not completed yet' : ''}.`;
}

function newKeyPanel(v: DashboardView): Html {
  if (!v.newKey) return html``;
  return html`<section class="panel" aria-labelledby="new-key-title">
<h2 id="new-key-title">Your new API key</h2>
${v.newKey.intro ? html`<p>${v.newKey.intro}</p>` : ''}
<label for="new-key">API key (shown once)</label>
<input id="new-key" class="key" type="text" readonly value="${v.newKey.key}" autocomplete="off" spellcheck="false">
<p class="actions"><button type="button" data-copy="new-key" hidden>Copy key</button></p>
<p class="warning">Copy it now: it is shown only this once and never again, not even if you reload this page.
Keep it secret: whoever has it spends your budget. Lost it? Rotate it to get a new one.</p>
</section>`;
}

function keyPanel(v: DashboardView): Html {
  const k = v.key;
  if (!k) {
    return html`<p>You have no API key.</p>
${postForm('/key/create', v.csrf, html`<button type="submit">Create my key</button>`)}`;
  }
  const facts = html`<dl class="facts">
<dt>Key</dt><dd><code>${k.prefix}…</code></dd>
<dt>Tier</dt><dd>${k.tier}</dd>
<dt>Status</dt><dd>${k.status}${k.statusReason ? ` (${k.statusReason})` : ''}</dd>
<dt>Created</dt><dd>${date(k.createdAt, v.timeZone)}</dd>
${k.expiresAt ? html`<dt>Expires</dt><dd>${date(k.expiresAt, v.timeZone)}</dd>` : ''}
</dl>`;
  if (k.status === 'suspended') {
    return html`${facts}<p class="warning">Your key is suspended by a moderator. Ask a moderator if you think this is wrong.</p>`;
  }
  return html`${facts}
<div class="actions">
${postForm('/key/rotate', v.csrf, html`<button type="submit">Rotate key</button>`, 'inline')}
${postForm('/key/revoke', v.csrf, html`<button type="submit" class="danger">Revoke key</button>`, 'inline')}
</div>
<p class="muted">Rotating gives you a new key and stops the old one at once; revoking stops it for good.</p>`;
}

function todayPanel(v: DashboardView): Html {
  const s = v.summary;
  const pct = s.budget > 0 ? ((100 * s.used) / s.budget).toFixed(1) : '0.0';
  return html`<dl class="facts">
<dt>Tokens today</dt><dd data-testid="usage-today"><meter min="0" max="${s.budget}" value="${Math.min(s.used, s.budget)}" aria-label="Tokens used today"></meter>
${num(s.used)} of ${num(s.budget)} (${pct}%)</dd>
<dt>Resets</dt><dd><time datetime="${s.resetAt.toISOString()}">${when(s.resetAt, v.timeZone, v.now)}</time></dd>
<dt>Requests</dt><dd>${num(v.tier.rpm)} per minute, ${num(v.tier.maxConcurrent)} at a time</dd>
<dt>Tier</dt><dd>${s.tier}</dd>
</dl>`;
}

function lastWeek(s: UsageSummary): Html {
  const rows = s.last7Days.map(
    (d) =>
      html`<tr data-requests="${d.requests}"><th scope="row">${d.day}</th><td class="num">${num(d.requests)}</td><td class="num">${num(d.chargedTokens)}</td></tr>`,
  );
  return html`<table><caption class="sr-only">Requests and charged tokens per day, today last</caption>
<thead><tr><th scope="col">Day</th><th scope="col" class="num">Requests</th><th scope="col" class="num">Tokens</th></tr></thead>
<tbody>${rows}</tbody></table>`;
}

function dataPanel(v: DashboardView): Html {
  return html`<p><a href="/privacy/export" download>Export my data</a>: everything stored about you as JSON (your user record,
key records without secrets, request metadata).</p>
<h3>Delete my data</h3>
<p>Deletes your user record, all your keys (a live key stops working at once) and your usage history, and signs you out.
Today's token budget is not refilled. This cannot be undone.</p>
${postForm(
  '/privacy/delete',
  v.csrf,
  html`<label for="confirm-delete">Type DELETE to confirm</label>
<input id="confirm-delete" name="confirm" type="text" autocomplete="off">
<p class="actions"><button type="submit" class="danger">Delete my data</button></p>`,
)}`;
}

export function dashboardPage(frame: Frame, v: DashboardView): Html {
  const u = v.user;
  return layout(
    frame,
    html`<h1>Your dashboard</h1>
<p><strong>${u.displayName}</strong> <span class="muted">@${u.username}</span><br><span class="muted">${membership(u, v.timeZone)}</span></p>
${newKeyPanel(v)}
<h2>API key</h2>
${keyPanel(v)}
<h2>Today</h2>
${todayPanel(v)}
<h2>Usage</h2>
<div data-testid="usage-chart">
<h3>Tokens per day and model, last 30 days</h3>
${usageChart(v.history)}
<h3>Last 7 days</h3>
${lastWeek(v.summary)}
<p class="muted">Recorded requests; the newest may take a moment to appear.</p>
</div>
<h2>Quick start</h2>
${quickStart(v.baseUrl, v.exampleModel)}
<h2>Your data</h2>
${dataPanel(v)}`,
  );
}
