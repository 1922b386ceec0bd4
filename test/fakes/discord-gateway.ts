// The gateway half of the fake Discord (test/fakes/discord.ts): Gateway v10 over WebSocket, JSON
// encoding, optional `compress=zlib-stream` (one deflate context per connection, every message
// ending in a Z_SYNC_FLUSH) and optional identify payload compression.
//
// Sessions survive their socket: dispatches made while no socket is attached are numbered and kept,
// and RESUME (op 6) replays everything after the client's sequence, then sends RESUMED.
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { createDeflate, type Deflate, deflateSync, constants as zlibConstants } from 'node:zlib';
import {
  GatewayCloseCodes,
  GatewayDispatchEvents,
  type GatewayDispatchPayload,
  GatewayIntentBits,
  GatewayOpcodes,
  type GatewayReadyDispatchData,
} from 'discord-api-types/v10';
import { type WebSocket, WebSocketServer } from 'ws';
import { snowflake } from './discord-model.js';

const ALL_INTENTS = Object.values(GatewayIntentBits)
  .filter((v): v is number => typeof v === 'number')
  .reduce((all, bit) => all | bit, 0);

/** Close codes after which Discord does not let the session be resumed. */
const NON_RESUMABLE = new Set([4004, 4007, 4009, 4010, 4011, 4012, 4013, 4014]);

export interface GatewayOptions {
  token: string;
  heartbeatIntervalMs: number;
  membersIntentAllowed: boolean;
  presenceIntentAllowed: boolean;
  messageContentIntentAllowed: boolean;
}

export interface GatewayHooks {
  /** READY for a new session (the gateway fills session_id and resume_gateway_url). */
  ready(): Omit<GatewayReadyDispatchData, 'session_id' | 'resume_gateway_url'>;
  /** Dispatches that follow READY (GUILD_CREATE per guild), given the session's intents. */
  afterReady(intents: number): Array<{ t: GatewayDispatchEvents; d: unknown }>;
  /** Answers op 8 Request Guild Members; null closes the socket with the returned code. */
  requestMembers(
    d: { guild_id?: string; query?: string; limit?: number; user_ids?: string | string[]; nonce?: string },
    intents: number,
  ): { d: unknown } | { close: number; reason: string };
}

/** A raw frame the fake sent or received, for tests that inspect the gateway conversation. */
export interface GatewayFrame {
  direction: 'in' | 'out';
  connection: number;
  op: number;
  t?: string | null;
  s?: number | null;
  d?: unknown;
}

export interface GatewayConnectionInfo {
  id: number;
  /** Path and query as requested (e.g. `/?v=10&encoding=json`). */
  url: string;
  compress: 'zlib-stream' | null;
  openedAt: number;
  closedAt?: number;
  /** Close code, who closed first, and the reason. */
  close?: { code: number; by: 'server' | 'client'; reason: string };
}

interface Session {
  id: string;
  intents: number;
  seq: number;
  /** Every dispatch of this session (replayed on resume). */
  log: Array<{ s: number; t: string; d: unknown }>;
  conn: Connection | null;
  identify: Record<string, unknown>;
  invalid: boolean;
}

interface Connection {
  info: GatewayConnectionInfo;
  ws: WebSocket;
  deflate: Deflate | null;
  identifyCompress: boolean;
  out: Promise<void>;
  session: Session | null;
  heartbeatTimer: NodeJS.Timeout | null;
  closing: boolean;
}

export class FakeGateway {
  readonly wss: WebSocketServer;
  readonly frames: GatewayFrame[] = [];
  readonly connections: GatewayConnectionInfo[] = [];
  /** Every IDENTIFY payload received (token included). */
  readonly identifies: Array<Record<string, unknown>> = [];
  identifyCount = 0;
  resumeCount = 0;
  readonly sessions = new Map<string, Session>();
  private readonly live = new Set<Connection>();
  private connectionCounter = 0;
  private baseUrl = '';

  constructor(
    private readonly options: GatewayOptions,
    private readonly hooks: GatewayHooks,
    private readonly onChange: () => void,
  ) {
    this.wss = new WebSocketServer({ noServer: true, maxPayload: 1024 * 1024 });
  }

  setBaseUrl(url: string): void {
    this.baseUrl = url;
  }

  get url(): string {
    return this.baseUrl;
  }

  get resumeUrl(): string {
    return `${this.baseUrl}/resume`;
  }

  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    this.wss.handleUpgrade(req, socket, head, (ws) => this.onConnection(ws, req));
  }

  /** Sessions that are identified and not invalidated. */
  activeSessions(): Session[] {
    return [...this.sessions.values()].filter((s) => !s.invalid);
  }

  /**
   * Sends a dispatch to every active session whose intents include `intent` (when given). A session
   * without a socket keeps it for the replay on resume. Returns how many sessions got it.
   */
  dispatch(t: GatewayDispatchEvents, d: unknown, intent?: number): number {
    let count = 0;
    for (const session of this.activeSessions()) {
      if (intent !== undefined && (session.intents & intent) === 0) continue;
      this.dispatchTo(session, t, d);
      count++;
    }
    return count;
  }

  /** Closes every live socket with `code`; the sessions stay resumable unless the code forbids it. */
  closeGateway(code: number, reason = ''): void {
    for (const conn of this.live) this.serverClose(conn, code, reason);
  }

  /** Sends op 7 Reconnect to every live socket (the client closes and resumes). */
  requestReconnect(): void {
    for (const conn of this.live) this.send(conn, { op: GatewayOpcodes.Reconnect, d: null });
  }

  /** Sends op 9 Invalid Session; `resumable: false` also forgets the session. */
  invalidateSessions(resumable: boolean): void {
    for (const conn of this.live) {
      if (!resumable && conn.session) conn.session.invalid = true;
      this.send(conn, { op: GatewayOpcodes.InvalidSession, d: resumable });
    }
  }

  async close(): Promise<void> {
    for (const conn of this.live) this.serverClose(conn, 1001, 'fake discord shutting down');
    for (const client of this.wss.clients) client.terminate();
    await new Promise<void>((resolve) => this.wss.close(() => resolve()));
  }

  // -------------------------------------------------------------------------------------------

  private onConnection(ws: WebSocket, req: IncomingMessage): void {
    const url = new URL(req.url ?? '/', 'ws://fake');
    const compress = url.searchParams.get('compress');
    const info: GatewayConnectionInfo = {
      id: ++this.connectionCounter,
      url: req.url ?? '/',
      compress: compress === 'zlib-stream' ? 'zlib-stream' : null,
      openedAt: Date.now(),
    };
    this.connections.push(info);
    const conn: Connection = {
      info,
      ws,
      deflate: null,
      identifyCompress: false,
      out: Promise.resolve(),
      session: null,
      heartbeatTimer: null,
      closing: false,
    };
    this.live.add(conn);
    ws.on('close', (code, reason) => this.onSocketClosed(conn, code, reason.toString()));
    ws.on('error', () => {});

    if (url.searchParams.get('v') !== '10') {
      this.serverClose(conn, GatewayCloseCodes.InvalidAPIVersion, 'Invalid API version');
      return;
    }
    const encoding = url.searchParams.get('encoding') ?? 'json';
    if (encoding !== 'json' || (compress !== null && compress !== 'zlib-stream')) {
      // The fake speaks JSON only (ETF and zstd are not implemented): refuse rather than pretend.
      this.serverClose(conn, GatewayCloseCodes.DecodeError, 'Error while decoding payload.');
      return;
    }
    if (info.compress) {
      const deflate = createDeflate({ chunkSize: 65535 });
      conn.deflate = deflate;
    }
    ws.on('message', (data, isBinary) => this.onMessage(conn, data as Buffer, isBinary));
    this.send(conn, { op: GatewayOpcodes.Hello, d: { heartbeat_interval: this.options.heartbeatIntervalMs } });
    this.armHeartbeatTimeout(conn);
    this.onChange();
  }

  private armHeartbeatTimeout(conn: Connection): void {
    if (conn.heartbeatTimer) clearTimeout(conn.heartbeatTimer);
    // Discord drops a connection that stops heartbeating; allow the interval plus a grace period.
    const ms = this.options.heartbeatIntervalMs * 1.5 + 5000;
    conn.heartbeatTimer = setTimeout(() => this.serverClose(conn, GatewayCloseCodes.SessionTimedOut, ''), ms);
    conn.heartbeatTimer.unref();
  }

  private onMessage(conn: Connection, data: Buffer, isBinary: boolean): void {
    if (conn.closing) return;
    if (isBinary || data.length > 4096) {
      this.serverClose(conn, GatewayCloseCodes.DecodeError, 'Error while decoding payload.');
      return;
    }
    let payload: { op?: unknown; d?: unknown };
    try {
      payload = JSON.parse(data.toString('utf8'));
    } catch {
      this.serverClose(conn, GatewayCloseCodes.DecodeError, 'Error while decoding payload.');
      return;
    }
    const op = typeof payload.op === 'number' ? payload.op : -1;
    this.frames.push({ direction: 'in', connection: conn.info.id, op, d: payload.d });
    switch (op) {
      case GatewayOpcodes.Heartbeat:
        this.armHeartbeatTimeout(conn);
        this.send(conn, { op: GatewayOpcodes.HeartbeatAck });
        return;
      case GatewayOpcodes.Identify:
        this.onIdentify(conn, payload.d);
        return;
      case GatewayOpcodes.Resume:
        this.onResume(conn, payload.d);
        return;
      case GatewayOpcodes.PresenceUpdate:
      case GatewayOpcodes.VoiceStateUpdate:
      case GatewayOpcodes.RequestSoundboardSounds:
        if (!conn.session) this.serverClose(conn, GatewayCloseCodes.NotAuthenticated, 'Not authenticated.');
        return;
      case GatewayOpcodes.RequestGuildMembers: {
        if (!conn.session) {
          this.serverClose(conn, GatewayCloseCodes.NotAuthenticated, 'Not authenticated.');
          return;
        }
        const answer = this.hooks.requestMembers((payload.d ?? {}) as never, conn.session.intents);
        if ('close' in answer) this.serverClose(conn, answer.close, answer.reason);
        else this.dispatchTo(conn.session, GatewayDispatchEvents.GuildMembersChunk, answer.d);
        return;
      }
      default:
        this.serverClose(conn, GatewayCloseCodes.UnknownOpcode, 'Unknown opcode.');
    }
  }

  private onIdentify(conn: Connection, raw: unknown): void {
    if (conn.session) {
      this.serverClose(conn, GatewayCloseCodes.AlreadyAuthenticated, 'Already authenticated.');
      return;
    }
    const d = (raw ?? {}) as Record<string, unknown>;
    this.identifies.push(d);
    this.identifyCount++;
    if (d.token !== this.options.token) {
      this.serverClose(conn, GatewayCloseCodes.AuthenticationFailed, 'Authentication failed.');
      return;
    }
    const intents = d.intents;
    if (typeof intents !== 'number' || !Number.isInteger(intents) || intents < 0 || (intents & ~ALL_INTENTS) !== 0) {
      this.serverClose(conn, GatewayCloseCodes.InvalidIntents, 'Invalid intent(s).');
      return;
    }
    const disallowed =
      (!this.options.membersIntentAllowed && (intents & GatewayIntentBits.GuildMembers) !== 0) ||
      (!this.options.presenceIntentAllowed && (intents & GatewayIntentBits.GuildPresences) !== 0) ||
      (!this.options.messageContentIntentAllowed && (intents & GatewayIntentBits.MessageContent) !== 0);
    if (disallowed) {
      this.serverClose(conn, GatewayCloseCodes.DisallowedIntents, 'Disallowed intent(s).');
      return;
    }
    const shard = d.shard;
    if (
      shard !== undefined &&
      (!Array.isArray(shard) || shard.length !== 2 || shard[0] !== 0 || shard[1] !== 1) // the fake has one shard
    ) {
      this.serverClose(conn, GatewayCloseCodes.InvalidShard, 'Invalid shard.');
      return;
    }
    conn.identifyCompress = d.compress === true && conn.deflate === null;
    const session: Session = {
      id: snowflake().slice(-10) + Math.random().toString(16).slice(2, 24),
      intents,
      seq: 0,
      log: [],
      conn,
      identify: d,
      invalid: false,
    };
    this.sessions.set(session.id, session);
    conn.session = session;
    const ready: GatewayReadyDispatchData = {
      ...this.hooks.ready(),
      session_id: session.id,
      resume_gateway_url: this.resumeUrl,
    };
    this.dispatchTo(session, GatewayDispatchEvents.Ready, ready);
    for (const { t, d: data } of this.hooks.afterReady(intents)) this.dispatchTo(session, t, data);
    this.onChange();
  }

  private onResume(conn: Connection, raw: unknown): void {
    if (conn.session) {
      this.serverClose(conn, GatewayCloseCodes.AlreadyAuthenticated, 'Already authenticated.');
      return;
    }
    const d = (raw ?? {}) as { token?: unknown; session_id?: unknown; seq?: unknown };
    if (d.token !== this.options.token) {
      this.serverClose(conn, GatewayCloseCodes.AuthenticationFailed, 'Authentication failed.');
      return;
    }
    const session = typeof d.session_id === 'string' ? this.sessions.get(d.session_id) : undefined;
    if (!session || session.invalid) {
      this.send(conn, { op: GatewayOpcodes.InvalidSession, d: false });
      return;
    }
    const seq = typeof d.seq === 'number' ? d.seq : -1;
    if (seq < 0 || seq > session.seq) {
      session.invalid = true;
      this.serverClose(conn, GatewayCloseCodes.InvalidSeq, 'Invalid seq.');
      return;
    }
    // A session lives on one socket: a resume takes it over.
    if (session.conn && session.conn !== conn) this.serverClose(session.conn, 4000, 'session resumed elsewhere');
    this.resumeCount++;
    session.conn = conn;
    conn.session = session;
    for (const entry of session.log) {
      if (entry.s > seq) this.send(conn, { op: GatewayOpcodes.Dispatch, t: entry.t, s: entry.s, d: entry.d });
    }
    this.dispatchTo(session, GatewayDispatchEvents.Resumed, null);
    this.onChange();
  }

  private dispatchTo(session: Session, t: string, d: unknown): void {
    const s = ++session.seq;
    session.log.push({ s, t, d });
    if (session.conn && !session.conn.closing) {
      this.send(session.conn, { op: GatewayOpcodes.Dispatch, t, s, d });
    }
  }

  private send(conn: Connection, payload: { op: number; d?: unknown; t?: string; s?: number }): void {
    if (conn.closing) return;
    const frame = {
      op: payload.op,
      d: payload.d ?? null,
      s: payload.s ?? null,
      t: payload.t ?? null,
    } as GatewayDispatchPayload | { op: number; d: unknown; s: null; t: null };
    this.frames.push({ direction: 'out', connection: conn.info.id, op: frame.op, t: frame.t, s: frame.s, d: frame.d });
    const text = JSON.stringify(frame);
    conn.out = conn.out.then(async () => {
      if (conn.ws.readyState !== conn.ws.OPEN) return;
      if (conn.deflate) {
        const data = await deflateSyncFlush(conn.deflate, text);
        conn.ws.send(data, { binary: true });
      } else if (conn.identifyCompress && payload.op === GatewayOpcodes.Dispatch) {
        conn.ws.send(deflateSync(text), { binary: true });
      } else {
        conn.ws.send(text);
      }
    });
  }

  private serverClose(conn: Connection, code: number, reason: string): void {
    if (conn.closing) return;
    conn.closing = true;
    conn.info.close ??= { code, by: 'server', reason };
    if (conn.session && NON_RESUMABLE.has(code)) conn.session.invalid = true;
    conn.out = conn.out.then(() => {
      if (conn.ws.readyState === conn.ws.OPEN || conn.ws.readyState === conn.ws.CONNECTING) conn.ws.close(code, reason);
    });
    this.detach(conn);
  }

  private onSocketClosed(conn: Connection, code: number, reason: string): void {
    conn.info.close ??= { code, by: 'client', reason };
    conn.info.closedAt = Date.now();
    // A client closing with 1000/1001 ends its session (Discord shows the bot offline at once).
    if (conn.info.close.by === 'client' && (code === 1000 || code === 1001) && conn.session)
      conn.session.invalid = true;
    conn.closing = true;
    this.detach(conn);
    this.onChange();
  }

  private detach(conn: Connection): void {
    if (conn.heartbeatTimer) clearTimeout(conn.heartbeatTimer);
    conn.heartbeatTimer = null;
    this.live.delete(conn);
    if (conn.session && conn.session.conn === conn) conn.session.conn = null;
    if (conn.deflate) {
      const deflate = conn.deflate;
      conn.out = conn.out.then(() => {
        deflate.close();
      });
    }
  }
}

function deflateSyncFlush(deflate: Deflate, text: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const onData = (chunk: Buffer) => chunks.push(chunk);
    deflate.on('data', onData);
    deflate.once('error', reject);
    deflate.write(text);
    deflate.flush(zlibConstants.Z_SYNC_FLUSH, () => {
      deflate.off('data', onData);
      deflate.off('error', reject);
      resolve(Buffer.concat(chunks));
    });
  });
}
