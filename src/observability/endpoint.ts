// Serving GET /metrics: on the main port when GUILDGATE_METRICS_TOKEN is set (bearer token required),
// and/or on a listener of its own (`metrics.listen`; the token is required there too when set).
import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { RequestHandler } from 'express';
import { parseListen } from '../config/load.js';
import { AppError } from '../domain/errors.js';
import type { PromMetrics } from './metrics.js';

const BEARER = /^Bearer\s+(\S+)\s*$/i;

const digest = (s: string) => createHash('sha256').update(s).digest();

/**
 * Whether an Authorization header carries the token. Both sides are hashed first, so the comparison
 * is constant-time whatever the length of what was sent. Without a token every request passes.
 */
export function tokenCheck(token: string | undefined): (authorization: string | undefined) => boolean {
  if (!token) return () => true;
  const expected = digest(token);
  return (authorization) => {
    const match = BEARER.exec(authorization ?? '');
    return timingSafeEqual(digest(match?.[1] ?? ''), expected);
  };
}

function errorJson(message: string, type: string, code: string): string {
  return JSON.stringify({ error: { message, type, param: null, code } });
}

const UNAUTHORIZED_MESSAGE =
  'Send the metrics token in the Authorization header as "Bearer <GUILDGATE_METRICS_TOKEN>".';
const UNAUTHORIZED = errorJson(UNAUTHORIZED_MESSAGE, 'invalid_request_error', 'invalid_metrics_token');

/**
 * GET /metrics on the relay's own express app (mounted only when a token is configured). A refusal
 * goes through the relay's error mapper like any other, so it is counted and shaped the same way.
 */
export function metricsRoute(metrics: PromMetrics, token: string): RequestHandler {
  const allowed = tokenCheck(token);
  return async (req, res) => {
    if (!allowed(req.headers.authorization)) {
      throw new AppError(UNAUTHORIZED_MESSAGE, {
        status: 401,
        type: 'invalid_request_error',
        code: 'invalid_metrics_token',
        headers: { 'www-authenticate': 'Bearer' },
      });
    }
    const { contentType, body } = await metrics.scrape();
    res.set('cache-control', 'no-store').type(contentType).send(body);
  };
}

export interface MetricsListener {
  url: string;
  close(): Promise<void>;
}

/**
 * A plain HTTP listener that answers GET /metrics and nothing else. A failure to bind names the
 * config field, so a port clash at startup says where to look.
 */
export async function startMetricsListener(
  metrics: PromMetrics,
  listen: string,
  token: string | undefined,
): Promise<MetricsListener> {
  const allowed = tokenCheck(token);
  const send = (res: ServerResponse, status: number, type: string, body: string) => {
    res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' }).end(body);
  };
  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '').split('?', 1)[0];
    if (path !== '/metrics' || (req.method !== 'GET' && req.method !== 'HEAD')) {
      send(
        res,
        404,
        'application/json',
        errorJson('Only GET /metrics is served here.', 'invalid_request_error', 'unknown_url'),
      );
      return;
    }
    if (!allowed(req.headers.authorization)) {
      res.setHeader('www-authenticate', 'Bearer');
      send(res, 401, 'application/json', UNAUTHORIZED);
      return;
    }
    const { contentType, body } = await metrics.scrape();
    send(res, 200, contentType, body);
  };
  const server: Server = createServer((req, res) => {
    handle(req, res).catch(() => {
      if (!res.headersSent)
        send(res, 500, 'application/json', errorJson('Collecting metrics failed.', 'api_error', 'internal_error'));
      else res.destroy();
    });
  });
  const { host, port } = parseListen(listen);
  await new Promise<void>((resolve, reject) => {
    server.once('listening', resolve);
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(new Error(`metrics.listen: cannot listen on ${listen} (${err.code ?? err.message})`)),
    );
    server.listen(port, host);
  });
  const addr = server.address() as AddressInfo;
  const shown = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  return {
    url: `http://${shown}:${addr.port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
