// Runs the relay over HTTP with graceful shutdown: stop accepting, let in-flight requests finish up
// to the grace deadline, flush usage, close the store.
import { createServer, type Server, type ServerOptions } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { scheduleRetention } from './app/retention.js';
import type { Config } from './config/schema.js';
import { buildServices } from './container.js';
import type { Upstream } from './domain/ports.js';
import { createRelayListener } from './relay/app.js';
import type { Services } from './services.js';
import { webEnabled } from './web/enabled.js';
import type { Web } from './web/index.js';

/**
 * Limits on what a client may take from the HTTP server before the app sees a request. A client
 * that dribbles its headers (slowloris) or its body holds a socket and its buffers, so both are
 * timed out; Node answers 408 and closes. Relayed answers are not affected: the request timeout
 * ends once the request is fully received, however long the stream that follows.
 */
export const HTTP_LIMITS = {
  /** Headers must be complete this long after a request starts (Node's default: 60 s). */
  headersTimeout: 15_000,
  /** The whole request, body included (Node's default: 300 s); a 2 MB body needs ~35 kB/s. */
  requestTimeout: 60_000,
  /** How often those two are checked (Node's default: 30 s, which would let them overrun by as much). */
  connectionsCheckingInterval: 1_000,
  /** Bytes of request line and headers; more gets a bare 431 (Node's default, stated). */
  maxHeaderSize: 16 * 1024,
  /** Above common load balancers' idle timeouts (60 s), so they never reuse a socket we just closed. */
  keepAliveTimeout: 65_000,
} as const satisfies ServerOptions;

export interface RunningRelay {
  services: Services;
  server: Server;
  url: string;
  /** Graceful stop; resolves when everything is closed. Idempotent. */
  stop(): Promise<void>;
}

export async function startRelay(
  config: Config,
  opts: { log: Logger; upstream?: Upstream; now?: () => Date },
): Promise<RunningRelay> {
  const services = await buildServices(config, opts);
  let web: Web | null = null;
  if (webEnabled(config)) {
    // Loaded only when configured: a relay without the web carries none of it.
    const { createWeb } = await import('./web/index.js');
    web = await createWeb(services).catch(async (err) => {
      await services.close();
      throw err;
    });
  }
  let draining = false;
  const listener = createRelayListener(services, { isDraining: () => draining, web: web?.router });
  const server = createServer(HTTP_LIMITS, listener);
  server.listen(config.server.port, config.server.host);
  await new Promise<void>((resolve, reject) => {
    server.once('listening', resolve);
    server.once('error', reject);
  }).catch(async (err) => {
    await web?.close();
    await services.close();
    throw err;
  });

  const stopRetention = scheduleRetention(services.store, config.usage.retentionDays, services.now, services.log);

  const addr = server.address() as AddressInfo;
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  const url = `http://${host}:${addr.port}`;

  let stopping: Promise<void> | null = null;
  const stop = () => {
    stopping ??= (async () => {
      draining = true;
      stopRetention();
      const deadline = Date.now() + config.server.shutdownGraceMs;
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      // Keep-alive connections become idle as their last response ends; close them as they do.
      server.closeIdleConnections();
      const sweep = setInterval(() => server.closeIdleConnections(), 100);
      const timer = setTimeout(() => server.closeAllConnections(), Math.max(0, deadline - Date.now()));
      await closed;
      clearInterval(sweep);
      clearTimeout(timer);
      // Connections closed at the deadline abort their requests; let those record and settle.
      await services.inflight.settled(Date.now() + 2_000);
      await web?.close();
      await services.close(Date.now() + 3_000);
    })();
    return stopping;
  };
  return { services, server, url, stop };
}
