// Serves the stylesheet and the script under /assets/. They live in TypeScript modules so the
// compiled build carries them without a copy step; the `?v=` hash in their links busts caches.
import { createHash } from 'node:crypto';
import { Router } from 'express';
import { COPY_JS } from './copy-button.js';
import { STYLE_CSS } from './style.js';

const version = (text: string) => createHash('sha256').update(text).digest('hex').slice(0, 10);

export const ASSETS = {
  style: `/assets/style.css?v=${version(STYLE_CSS)}`,
  script: `/assets/copy.js?v=${version(COPY_JS)}`,
};

export function assetRouter(): Router {
  const router = Router();
  const serve = (path: string, type: string, text: string) =>
    router.get(path, (_req, res) => {
      res.set({ 'content-type': type, 'cache-control': 'public, max-age=86400' }).send(text);
    });
  serve('/assets/style.css', 'text/css; charset=utf-8', STYLE_CSS);
  serve('/assets/copy.js', 'text/javascript; charset=utf-8', COPY_JS);
  return router;
}
