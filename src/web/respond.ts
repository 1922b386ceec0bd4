// How the web answers: HTML pages that are never cached (they carry personal data and one-time keys),
// and `PageError`, a refusal a person can read, thrown by any handler and rendered by the error page.
import type { Response } from 'express';
import type { Html } from './html.js';

export interface PageAction {
  href: string;
  label: string;
}

export class PageError extends Error {
  constructor(
    readonly status: number,
    readonly title: string,
    /** What happened and what to do about it. */
    readonly detail: string,
    readonly actions: PageAction[] = [],
  ) {
    super(title);
    this.name = 'PageError';
  }
}

export function sendPage(res: Response, page: Html, status = 200): void {
  res.status(status).set({ 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' }).send(page.value);
}
