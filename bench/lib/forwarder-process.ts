// Child process: the floor of any Node relay. A bare node:http server that pipes each request to the
// upstream through an undici Pool and streams the answer back: no auth, no limits, no parsing.
// Usage: forwarder-process.ts <upstream origin>. Prints `{"url":...}` once ready.
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pipeline } from 'node:stream/promises';
import { type Dispatcher, Pool } from 'undici';

// Hop-by-hop headers describe one connection and must not cross the proxy (RFC 9110 §7.6.1).
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'te',
  'upgrade',
  'host',
]);

function endToEnd(headers: IncomingHttpHeaders | Record<string, string | string[] | undefined>) {
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value !== undefined && !HOP_BY_HOP.has(name)) out[name] = value;
  }
  return out;
}

const origin = process.argv[2];
if (!origin) throw new Error('usage: forwarder-process.ts <upstream origin>');
// Same connection count as the relay's upstream pool in the bench config.
const pool = new Pool(origin, { connections: 64 });

const server = createServer(async (req, res) => {
  try {
    const upstream = await pool.request({
      method: req.method as Dispatcher.HttpMethod,
      path: req.url ?? '/',
      headers: endToEnd(req.headers),
      body: req,
    });
    res.writeHead(upstream.statusCode, endToEnd(upstream.headers));
    await pipeline(upstream.body, res);
  } catch {
    if (res.headersSent) res.destroy();
    else res.writeHead(502).end();
  }
});
server.keepAliveTimeout = 65_000;
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address() as AddressInfo;
  process.stdout.write(`${JSON.stringify({ url: `http://127.0.0.1:${port}` })}\n`);
});

process.once('SIGTERM', () => {
  server.close();
  server.closeAllConnections();
  pool.close().finally(() => process.exit(0));
});
