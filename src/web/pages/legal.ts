// `/privacy` and `/terms`: the operator's Markdown from `web.pagesDir`, else defaults that say what
// this relay really stores.
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Config } from '../../config/schema.js';
import { type Html, html } from '../html.js';
import { renderMarkdown } from '../markdown.js';
import { type Frame, layout } from './layout.js';

export type LegalPage = 'privacy' | 'terms';

export const LEGAL_TITLES: Record<LegalPage, string> = { privacy: 'Privacy', terms: 'Terms of use' };

export function defaultPrivacy(config: Config): string {
  const days = config.usage.retentionDays;
  return `# Privacy

This relay forwards your requests to AI model providers. It is run by the operators of this Discord server.

## What is stored

- **Your Discord user id**, when you first get a key or sign in and use the relay.
- **Your API keys**: a fingerprint (SHA-256 hash) of each key, never the key itself, with its prefix, tier,
  status and dates.
- **Request metadata** for every request: model, token counts, status, timing. **Never your prompts or the
  replies** (they pass through and are not written anywhere).
- **Daily totals** per model (requests and tokens), from which your daily budget is counted.
- An **audit log** of key and account changes (who did what, when), naming Discord ids only.

Request records are kept **${days} days**, then deleted. When you sign in on the web, a session cookie keeps you
signed in; the session holds your Discord id, name and what Discord said about your membership at sign-in.
Discord access tokens are not kept: each is revoked right after sign-in.

## Your choices

- **Export**: download everything stored about you from your dashboard (or \`/privacy export\` in Discord).
- **Delete**: delete your user record, keys and usage history from your dashboard (or \`/privacy delete\` in
  Discord). Live keys stop working at once. The audit log keeps entries naming your Discord id, including what you
  had been charged on the day of deletion, so deleting does not refill that day's token budget.

The model providers this relay forwards to have their own privacy policies, which apply to the content you send.
`;
}

export function defaultTerms(config: Config): string {
  return `# Terms of use

- Keys are for members of this Discord server, one key per member. Do not share your key: whoever has it spends
  your budget.
- Use is limited per tier (requests per minute, tokens per day, see the [home page](/)); budgets reset at midnight
  (${config.limits.budgetTimeZone}).
- Moderators may suspend or revoke keys, and the relay may refuse or end requests, at any time.
- Follow the server's rules and the usage policies of the model providers. The service comes as it is, without
  any guarantee of availability.
`;
}

/** The operator's file when there is one; a missing file falls back to the default, other errors surface. */
async function source(config: Config, page: LegalPage): Promise<string> {
  if (config.web.pagesDir) {
    try {
      return await readFile(join(resolve(config.web.pagesDir), `${page}.md`), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
  return page === 'privacy' ? defaultPrivacy(config) : defaultTerms(config);
}

export async function legalPage(frame: Frame, config: Config, page: LegalPage): Promise<Html> {
  return layout(frame, html`<article>${renderMarkdown(await source(config, page))}</article>`);
}
