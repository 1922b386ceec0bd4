// A page that says one thing: a refusal, an error, or the end of something (sign-in cancelled).
import { type Html, html } from '../html.js';
import type { PageAction } from '../respond.js';
import { type Frame, layout } from './layout.js';

export function messagePage(frame: Frame, detail: string, actions: PageAction[] = [], extra?: Html): Html {
  return layout(
    frame,
    html`<h1>${frame.title}</h1>
<p>${detail}</p>
${extra ?? ''}
${actions.length ? html`<p class="actions">${actions.map((a) => html`<a class="button" href="${a.href}">${a.label}</a>`)}</p>` : ''}`,
  );
}
