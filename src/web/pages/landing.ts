// `/`: what this relay offers (tiers, models, who may get a key) and the way in.
import type { Config } from '../../config/schema.js';
import { type Html, html } from '../html.js';
import { type Frame, layout } from './layout.js';

const num = (n: number) => n.toLocaleString('en-US');
const days = (n: number) => `${num(n)} day${n === 1 ? '' : 's'}`;

function tiersTable(config: Config): Html {
  const rows = Object.entries(config.tiers).map(
    ([name, t]) => html`<tr>
<th scope="row">${name}${name === config.defaultTier ? html` <span class="muted">(default)</span>` : ''}</th>
<td class="num">${num(t.rpm)}</td><td class="num">${num(t.tokensPerDay)}</td><td class="num">${num(t.maxConcurrent)}</td>
<td class="num">${num(t.maxTokens)}</td><td>${t.models.includes('*') ? 'all models' : t.models.join(', ')}</td></tr>`,
  );
  return html`<table>
<caption class="sr-only">Tiers and their limits</caption>
<thead><tr><th scope="col">Tier</th><th scope="col" class="num">Requests / min</th><th scope="col" class="num">Tokens / day</th>
<th scope="col" class="num">Parallel requests</th><th scope="col" class="num">Max tokens / reply</th><th scope="col">Models</th></tr></thead>
<tbody>${rows}</tbody></table>`;
}

function modelsList(config: Config): Html {
  const models = Object.entries(config.models);
  if (models.length === 0) return html`<p class="muted">No models are configured yet.</p>`;
  return html`<ul>${models.map(
    ([name, m]) =>
      html`<li><code>${name}</code> <span class="muted">(${m.kind === 'chat' ? 'chat' : 'embeddings'}${m.tokenWeight === 1 ? '' : `, tokens count ×${m.tokenWeight}`})</span></li>`,
  )}</ul>`;
}

function whoMayGetAKey(config: Config): Html {
  const g = config.gates;
  const rules = [
    'You are a member of the Discord server.',
    g.requireScreening ? "You have completed the server's membership screening (accepted its rules)." : null,
    g.requiredRoleIds.length ? 'You hold the role(s) the server requires for access.' : null,
    g.minAccountAgeDays > 0 ? `Your Discord account is at least ${days(g.minAccountAgeDays)} old.` : null,
    g.minMemberDays > 0 ? `You have been in the server for at least ${days(g.minMemberDays)}.` : null,
  ].filter((r): r is string => r !== null);
  return html`<ul>${rules.map((r) => html`<li>${r}</li>`)}</ul>`;
}

export function landingPage(frame: Frame, config: Config): Html {
  const cta = frame.user
    ? html`<p class="actions"><a class="button" href="/dashboard">Go to your dashboard</a></p>`
    : html`<p class="actions"><a class="button" href="/auth/discord">Sign in with Discord</a></p>`;
  return layout(
    frame,
    html`<h1>An OpenAI-compatible API for this Discord server</h1>
<p>Members get their own API key and use it with any OpenAI client: point the client at
<code>${config.publicBaseUrl}/v1</code>. Sign in with your Discord account to get a key, see your usage and manage your data.</p>
${cta}
<h2>Who can get a key</h2>
${whoMayGetAKey(config)}
<h2>Tiers and limits</h2>
<p>Token budgets are per member and per day; they reset at midnight (${config.limits.budgetTimeZone}).</p>
${tiersTable(config)}
<h2>Models</h2>
${modelsList(config)}
<h2>Your data</h2>
<p>The relay stores request metadata only (model, token counts, status, timing), never your prompts or the replies.
Read the <a href="/privacy">privacy notice</a> and the <a href="/terms">terms</a>.</p>`,
  );
}
