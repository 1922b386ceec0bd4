// The client's address as Express computes `req.ip`, with the same `trust proxy` setting
// (server.trustProxy), for the /v1 pipeline that runs without Express.
import type { IncomingMessage } from 'node:http';
import proxyaddr from 'proxy-addr';

export type TrustProxy = boolean | number | string;

type Trust = (addr: string, hop: number) => boolean;

function compileTrust(setting: TrustProxy): Trust {
  if (setting === true) return () => true;
  if (typeof setting === 'number') return (_addr, hop) => hop < setting;
  if (typeof setting === 'string') return proxyaddr.compile(setting.split(',').map((s) => s.trim()));
  return proxyaddr.compile([]);
}

export function clientIp(setting: TrustProxy): (req: IncomingMessage) => string {
  const trust = compileTrust(setting);
  return (req) => proxyaddr(req, trust);
}
