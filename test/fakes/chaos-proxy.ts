// A TCP proxy for fault tests: sits between the relay and a (fake) upstream and breaks the response
// direction of chosen connections. Requests always pass through untouched, so the upstream has seen
// (and may bill) every request whose connection is broken afterwards, as with a real provider.
// Faults apply per TCP connection: from a queue, else from a schedule, else the default.
import { connect, createServer, type Server, type Socket } from 'node:net';

/**
 * `afterBytes` counts response bytes passed through before the fault strikes: from the first byte
 * (default; 0 strikes before the status line) or, with `inBody`, from the end of the first response
 * head, so the fault hits an answer whose headers were already delivered (at the latest before a
 * second answer on the connection begins).
 */
interface Offset {
  afterBytes?: number;
  inBody?: boolean;
}

export type Fault =
  /**
   * Passes everything. With `closeWhenIdleMs`, ends the connection once the upstream has been quiet
   * that long after answering and no new request started, so a pool keeps opening new connections
   * (and meeting new faults) under load, as providers closing idle keep-alive connections do.
   */
  | { kind: 'pass'; closeWhenIdleMs?: number }
  /** Stops forwarding the response; both sockets stay open until the relay gives up. */
  | ({ kind: 'hang' } & Offset)
  /** Closes the relay's socket with a TCP RST. */
  | ({ kind: 'reset' } & Offset)
  /** Ends the relay's socket cleanly (FIN) in the middle of the response. */
  | ({ kind: 'truncate' } & Offset)
  /** Replaces the rest of the response with `bytes` (default: random bytes), then FIN. */
  | ({ kind: 'garbage'; bytes?: Buffer } & Offset);

export interface AppliedFault {
  connection: number;
  fault: Fault;
  /** Whether the fault was reached (a connection closed before `afterBytes` never is). */
  struck: boolean;
}

export interface ChaosProxy {
  /** `http://127.0.0.1:<port>` */
  url: string;
  /** Queues a fault for the next new connection (first in, first out). */
  next(fault: Fault): void;
  /** Decides the fault of each connection the queue does not cover (1-based connection number). */
  schedule(pick: ((connection: number) => Fault) | null): void;
  /** Fault when neither queue nor schedule decides (initially `pass`). */
  setDefault(fault: Fault): void;
  /** One entry per accepted connection. */
  readonly applied: AppliedFault[];
  /** Sockets (relay side and upstream side) currently open. */
  readonly open: number;
  close(): Promise<void>;
}

export async function startChaosProxy(target: { host?: string; port: number }): Promise<ChaosProxy> {
  const queue: Fault[] = [];
  let pick: ((connection: number) => Fault) | null = null;
  let fallback: Fault = { kind: 'pass' };
  const applied: AppliedFault[] = [];
  const sockets = new Set<Socket>();

  const track = (s: Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
    // Resets and hangs make errors on both sides routine; they end the pair below.
    s.on('error', () => {});
  };

  const server: Server = createServer((client) => {
    const entry: AppliedFault = {
      connection: applied.length + 1,
      fault: queue.shift() ?? pick?.(applied.length + 1) ?? fallback,
      struck: false,
    };
    applied.push(entry);
    const { fault } = entry;
    const upstream = connect({ host: target.host ?? '127.0.0.1', port: target.port });
    track(client);
    track(upstream);
    client.on('data', (d) => upstream.write(d));
    client.once('close', () => upstream.destroy());
    let sent = 0;
    /** Response bytes so far (answers here are small), to find where the first head ends. */
    let seen = Buffer.alloc(0);
    let broken = false;
    /** Where the first answer's body ends, once known. */
    let bodyEnd = Number.POSITIVE_INFINITY;
    const strikeAt = (): number => {
      if (fault.kind === 'pass') return Number.POSITIVE_INFINITY;
      if (!fault.inBody) return fault.afterBytes ?? 0;
      const head = seen.indexOf('\r\n\r\n');
      if (head < 0) return Number.POSITIVE_INFINITY;
      const length = /\r\ncontent-length:\s*(\d+)/i.exec(seen.subarray(0, head).toString('latin1'));
      if (length) bodyEnd = head + 4 + Number(length[1]);
      else {
        const last = seen.indexOf('\r\n0\r\n\r\n', head + 2);
        if (last >= 0) bodyEnd = last + 7;
      }
      // Always inside the first body, so the fault never lands on a later answer's head.
      return Math.min(head + 4 + (fault.afterBytes ?? 0), bodyEnd - 1);
    };
    let idleTimer: NodeJS.Timeout | undefined;
    const closeWhenIdle = fault.kind === 'pass' ? fault.closeWhenIdleMs : undefined;
    client.on('data', () => clearTimeout(idleTimer));
    client.once('close', () => clearTimeout(idleTimer));

    const strike = () => {
      broken = true;
      entry.struck = true;
      switch (fault.kind) {
        case 'hang':
          // Keep the upstream connected but read nothing more from it.
          upstream.pause();
          return;
        case 'reset':
          upstream.destroy();
          client.resetAndDestroy();
          return;
        case 'truncate':
          upstream.destroy();
          client.end();
          return;
        case 'garbage':
          upstream.destroy();
          // No more bytes than the body has left: extra bytes would be read as the next answer's head.
          client.end(
            fault.bytes ??
              randomGarbage(Math.max(1, Math.min(64 + Math.floor(Math.random() * 192), bodyEnd - sent - 1))),
          );
          return;
      }
    };

    upstream.on('data', (d: Buffer) => {
      if (broken) return;
      if (fault.kind === 'pass') {
        client.write(d);
        if (closeWhenIdle !== undefined) {
          clearTimeout(idleTimer);
          idleTimer = setTimeout(() => {
            client.end();
            upstream.end();
          }, closeWhenIdle);
        }
        return;
      }
      seen = Buffer.concat([seen, d]);
      const limit = strikeAt();
      if (limit - sent >= d.length) {
        client.write(d);
        sent += d.length;
        return;
      }
      if (limit > sent) client.write(d.subarray(0, limit - sent));
      sent = limit;
      strike();
    });
    upstream.once('end', () => {
      if (!broken) client.end();
    });
    upstream.once('close', () => {
      // A hung connection stays open for the relay to time out; anything else follows the upstream.
      if (!broken || fault.kind !== 'hang') client.destroy();
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  if (!address || typeof address !== 'object') throw new Error('chaos proxy: no port assigned');

  return {
    url: `http://127.0.0.1:${address.port}`,
    next: (fault) => {
      queue.push(fault);
    },
    schedule: (fn) => {
      pick = fn;
    },
    setDefault: (fault) => {
      fallback = fault;
    },
    applied,
    get open() {
      return [...sockets].filter((s) => !s.destroyed).length;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** Bytes that are neither valid HTTP nor valid SSE/JSON, with a few CRLFs to tempt a parser. */
function randomGarbage(size: number): Buffer {
  const b = Buffer.alloc(size);
  for (let i = 0; i < b.length; i++) b[i] = Math.floor(Math.random() * 256);
  if (size >= 8) b.write('\r\n\r\n', Math.floor(size / 2));
  return b;
}
