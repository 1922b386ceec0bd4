// One ioredis client from one URL. Commands fail fast while Redis is unreachable (no offline
// queue, one retry) so the relay can apply its failure policy at once; the connection itself
// keeps reconnecting forever with a capped backoff.
//
// Accepted URLs:
//   redis://[[user]:password@]host[:6379][/db]          single node (rediss:// for TLS)
//   redis-sentinel://[[user]:password@]host1[:26379][,host2[:26379]...]/masterName[/db][?sentinelPassword=...]
//                                                       Sentinel (rediss-sentinel:// for TLS); the password is the
//                                                       master's, sentinelPassword the sentinels' if they differ
//   redis-cluster://[[user]:password@]host1[:6379][,host2[:6379]...]
//                                                       Cluster seed nodes (rediss-cluster:// for TLS)
import { Cluster, Redis, type RedisOptions } from 'ioredis';
import { LIMIT_OPS_COMMAND } from './limit-ops.js';

export type RedisClient = Redis | Cluster;

export interface RedisClientOptions {
  /** Longest wait for one command before it fails (Redis alive but stuck). */
  commandTimeoutMs?: number;
  /** Upper bound of the reconnect backoff. */
  maxReconnectDelayMs?: number;
  /** Connection errors (already free of secrets). Without it they are dropped: the failure policy reports outages. */
  onError?: (err: Error) => void;
}

export function createRedis(url: string, opts: RedisClientOptions = {}): RedisClient {
  const maxDelay = opts.maxReconnectDelayMs ?? 2_000;
  const backoff = (times: number) => Math.min(times * 100, maxDelay);
  const common: RedisOptions = {
    lazyConnect: false,
    enableOfflineQueue: false,
    // Commands issued in the same tick leave in one write. The limit operations batch themselves
    // (limit-ops.ts): queueing their batch for yet another turn would only delay it.
    enableAutoPipelining: true,
    autoPipeliningIgnoredCommands: [LIMIT_OPS_COMMAND],
    maxRetriesPerRequest: 1,
    commandTimeout: opts.commandTimeoutMs ?? 1_000,
    retryStrategy: backoff,
  };

  const multi = /^(rediss?)-(sentinel|cluster):\/\/(.*)$/.exec(url);
  let client: RedisClient;
  if (!multi) {
    if (!/^rediss?:\/\//.test(url)) throw new Error(`unsupported Redis URL: ${redactRedisUrl(url)}`);
    client = new Redis(url, common);
  } else {
    const tls = multi[1] === 'rediss';
    const parsed = parseMultiHost(multi[3]!, url);
    const auth = { username: parsed.username, password: parsed.password };
    if (multi[2] === 'cluster') {
      client = new Cluster(parsed.hosts.map(hostPort(6379)), {
        lazyConnect: false,
        enableOfflineQueue: false,
        enableAutoPipelining: true,
        autoPipeliningIgnoredCommands: [LIMIT_OPS_COMMAND],
        clusterRetryStrategy: backoff,
        redisOptions: {
          ...auth,
          maxRetriesPerRequest: common.maxRetriesPerRequest,
          commandTimeout: common.commandTimeout,
          ...(tls ? { tls: {} } : {}),
        },
      });
    } else {
      const [name, db] = parsed.path;
      if (!name) throw new Error(`Redis Sentinel URL needs the master name as its path: ${redactRedisUrl(url)}`);
      client = new Redis({
        ...common,
        ...auth,
        sentinels: parsed.hosts.map(hostPort(26379)),
        name,
        db: db ? Number(db) : 0,
        sentinelPassword: parsed.query.get('sentinelPassword') ?? undefined,
        sentinelRetryStrategy: backoff,
        ...(tls ? { tls: {}, sentinelTLS: {}, enableTLSForSentinelMode: true } : {}),
      });
    }
  }
  // Without a listener ioredis prints every reconnect failure to stderr.
  client.on('error', (err: Error) => opts.onError?.(err));
  return client;
}

/** Waits until the client can take commands (with the offline queue off, earlier commands fail). */
export async function waitForReady(client: RedisClient, timeoutMs: number): Promise<void> {
  if (client.status === 'ready') return;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      client.off('ready', onReady);
      reject(new Error(`Redis not ready after ${timeoutMs} ms`));
    }, timeoutMs);
    const onReady = () => {
      clearTimeout(timer);
      resolve();
    };
    client.once('ready', onReady);
  });
}

/** The URL with every password replaced by `***`, for logs and error messages. */
export function redactRedisUrl(url: string): string {
  let out = url;
  const start = out.indexOf('://');
  // The last `@` ends the user info; if a query value holds one, more is hidden, never less.
  const at = out.lastIndexOf('@');
  if (start >= 0 && at > start) {
    const userinfo = out.slice(start + 3, at);
    const colon = userinfo.indexOf(':');
    // Without a colon the lone value is a user name, but people do write `redis://secret@host`.
    const shown = colon >= 0 ? `${userinfo.slice(0, colon)}:***` : '***';
    out = `${out.slice(0, start + 3)}${shown}${out.slice(at)}`;
  }
  return out.replace(/([?&][^=&]*password=)[^&#]*/gi, '$1***');
}

interface MultiHostUrl {
  hosts: string[];
  path: string[];
  query: URLSearchParams;
  username: string | undefined;
  password: string | undefined;
}

// WHATWG URL cannot hold a comma-separated host list, so the authority is split by hand.
function parseMultiHost(rest: string, url: string): MultiHostUrl {
  const q = rest.indexOf('?');
  const query = new URLSearchParams(q >= 0 ? rest.slice(q + 1) : '');
  const beforeQuery = q >= 0 ? rest.slice(0, q) : rest;
  const at = beforeQuery.lastIndexOf('@');
  const userinfo = at >= 0 ? beforeQuery.slice(0, at) : '';
  const afterAuth = beforeQuery.slice(at + 1);
  const slash = afterAuth.indexOf('/');
  const hostList = slash >= 0 ? afterAuth.slice(0, slash) : afterAuth;
  const path =
    slash >= 0
      ? afterAuth
          .slice(slash + 1)
          .split('/')
          .filter(Boolean)
      : [];
  const hosts = hostList.split(',').filter(Boolean);
  if (hosts.length === 0) throw new Error(`Redis URL names no host: ${redactRedisUrl(url)}`);
  const colon = userinfo.indexOf(':');
  const decode = (s: string) => (s === '' ? undefined : decodeURIComponent(s));
  return {
    hosts,
    path: path.map(decodeURIComponent),
    query,
    // Like ioredis for redis:// URLs: a lone value is the user name.
    username: decode(colon >= 0 ? userinfo.slice(0, colon) : userinfo),
    password: decode(colon >= 0 ? userinfo.slice(colon + 1) : ''),
  };
}

function hostPort(defaultPort: number): (hp: string) => { host: string; port: number } {
  return (hp) => {
    // `[::1]:6379` keeps its brackets off the host; a bare host takes the default port.
    const m = /^(?:\[([^\]]+)\]|([^:]+))(?::(\d+))?$/.exec(hp);
    if (!m) throw new Error(`bad Redis host "${hp}"`);
    return { host: (m[1] ?? m[2])!, port: m[3] ? Number(m[3]) : defaultPort };
  };
}

/**
 * Calls `onRestart` when the client reconnects to a Redis that is not the process it last talked
 * to (its `run_id` changed: a restart, or a failover), which may hold older data than it
 * acknowledged. Checked once per (re)connection, never per command.
 */
export function watchRestarts(client: RedisClient, onRestart: () => void): void {
  let known: string | null = null;
  const check = () => {
    runIds(client).then(
      (ids) => {
        if (known !== null && ids !== known) onRestart();
        known = ids;
      },
      () => {
        // Unknown this time; the next reconnection checks again.
      },
    );
  };
  client.on('ready', check);
  if (client.status === 'ready') check();
}

async function runIds(client: RedisClient): Promise<string> {
  const nodes = client instanceof Cluster ? client.nodes('master') : [client];
  const infos = await Promise.all(nodes.map((n) => n.info('server')));
  return infos
    .map((i) => /run_id:(\w+)/.exec(i)?.[1] ?? '')
    .sort()
    .join(',');
}
