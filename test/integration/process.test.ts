// The relay as a real process (`node --import tsx src/main.ts`): startup with and without a config
// file, config errors, health endpoints, and graceful shutdown on SIGTERM with a stream in flight.
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, get, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import OpenAI from 'openai';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { SqliteStore } from '../../src/adapters/sqlite/sqlite-store.js';
import { issueKey } from '../../src/app/keys.js';
import { loadConfig } from '../../src/config/load.js';
import { buildServices } from '../../src/container.js';
import { createLogger } from '../../src/logger.js';
import { type FakeUpstream, startFakeUpstream } from '../fakes/openai-upstream.js';
import { freePort } from '../helpers/redis-server.js';

const REPO = resolve(import.meta.dirname, '../..');
const TSX = pathToFileURL(join(REPO, 'node_modules/tsx/dist/loader.mjs')).href;
const MAIN = join(REPO, 'src/main.ts');
const START_TIMEOUT_MS = 30_000;
const DEFAULT_PORT = 8080;

interface LogLine {
  level: number;
  msg: string;
  [k: string]: unknown;
}

interface RelayProcess {
  child: ChildProcessWithoutNullStreams;
  logs: LogLine[];
  stdout: () => string;
  stderr: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Resolves with the first log line matching `msg`, or null when the process exits first. */
  waitForLog(msg: string, timeoutMs?: number): Promise<LogLine | null>;
}

const children: ChildProcessWithoutNullStreams[] = [];
let root: string;
let folderSeq = 0;

function folder(): string {
  const dir = join(root, `p${++folderSeq}`);
  mkdirSync(dir);
  return dir;
}

function baseEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, LOG_LEVEL: 'info', ...extra };
  // The machine's shared Redis / a MongoDB must not be picked up by `auto` backends.
  delete env.REDIS_URL;
  delete env.MONGODB_URI;
  for (const name of ['GUILDGATE_CONFIG', 'GUILDGATE_HOST', 'GUILDGATE_PORT']) if (!extra[name]) delete env[name];
  return env;
}

function startProcess(cwd: string, env: NodeJS.ProcessEnv): RelayProcess {
  const child = spawn(process.execPath, ['--import', TSX, MAIN], { cwd, env });
  children.push(child);
  const logs: LogLine[] = [];
  let out = '';
  let err = '';
  let pending = '';
  const waiters: Array<{ msg: string; resolve: (l: LogLine | null) => void }> = [];
  child.stdout.on('data', (d: Buffer) => {
    out += d.toString();
    pending += d.toString();
    const lines = pending.split('\n');
    pending = lines.pop() ?? '';
    for (const raw of lines) {
      if (!raw.trim()) continue;
      let line: LogLine;
      try {
        line = JSON.parse(raw) as LogLine;
      } catch {
        continue;
      }
      logs.push(line);
      for (const w of waiters.filter((x) => x.msg === line.msg)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(line);
      }
    }
  });
  child.stderr.on('data', (d: Buffer) => {
    err += d.toString();
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((done) => {
    child.once('exit', (code, signal) => {
      for (const w of waiters.splice(0)) w.resolve(null);
      done({ code, signal });
    });
  });
  return {
    child,
    logs,
    stdout: () => out,
    stderr: () => err,
    exited,
    waitForLog(msg, timeoutMs = START_TIMEOUT_MS) {
      const seen = logs.find((l) => l.msg === msg);
      if (seen) return Promise.resolve(seen);
      if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(null);
      return new Promise((done, fail) => {
        const timer = setTimeout(
          () => fail(new Error(`no "${msg}" log within ${timeoutMs} ms:\n${out}\n${err}`)),
          timeoutMs,
        );
        waiters.push({
          msg,
          resolve: (l) => {
            clearTimeout(timer);
            done(l);
          },
        });
      });
    },
  };
}

/** One GET on a fresh connection: the status, or the connection error code. */
function httpGet(url: string): Promise<{ status: number; body: string } | { error: string }> {
  return new Promise((done) => {
    const req = get(url, { agent: false, timeout: 5_000 }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => {
        body += d.toString();
      });
      res.on('end', () => done({ status: res.statusCode ?? 0, body }));
      res.on('error', (e: NodeJS.ErrnoException) => done({ error: e.code ?? e.message }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (e: NodeJS.ErrnoException) => done({ error: e.code ?? e.message }));
  });
}

type StreamOutcome = { status: number; complete: boolean } | { error: string };

/** A POST whose response is read to the end; `complete` is false when the server cut it short. */
function streamPost(
  url: string,
  apiKey: string,
  body: unknown,
  agent: Agent,
): { headers: Promise<void>; done: Promise<StreamOutcome> } {
  let gotHeaders: () => void = () => {};
  const headers = new Promise<void>((r) => {
    gotHeaders = r;
  });
  const done = new Promise<StreamOutcome>((resolveDone) => {
    const req = request(
      url,
      { method: 'POST', agent, headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' } },
      (res) => {
        gotHeaders();
        res.resume();
        res.once('close', () => resolveDone({ status: res.statusCode ?? 0, complete: res.complete }));
      },
    );
    req.once('error', (e: NodeJS.ErrnoException) => {
      gotHeaders();
      resolveDone({ error: e.code ?? e.message });
    });
    req.end(JSON.stringify(body));
  });
  return { headers, done };
}

function writeYaml(dir: string, lines: string[]): string {
  const file = join(dir, 'relay.yaml');
  writeFileSync(file, `${lines.join('\n')}\n`);
  return file;
}

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'gg-proc-'));
});

afterEach(async () => {
  // Only processes this file started; a failed test must not leave one running.
  for (const c of children.splice(0)) {
    if (c.exitCode === null && c.signalCode === null) {
      const gone = new Promise((r) => c.once('exit', r));
      c.kill('SIGKILL');
      await gone;
    }
  }
});

afterAll(() => {
  if (root) rmSync(root, { recursive: true, force: true });
});

describe('relay process', { timeout: 60_000 }, () => {
  it('starts with no config file at all, warns about it on stdout, and exits 0 on SIGTERM', async () => {
    const cwd = folder();
    // No file can set the port here. GUILDGATE_PORT overrides it where supported; otherwise the
    // default 8080 is used, and the listening line says which.
    const port = await freePort();
    const p = startProcess(cwd, baseEnv({ GUILDGATE_PORT: String(port) }));
    const listening = await p.waitForLog('guildgate relay listening');

    const warnings = p.logs.filter((l) => l.level === 40).map((l) => l.msg);
    expect(warnings).toContainEqual(expect.stringContaining('No config file found'));
    expect(warnings).toContainEqual(expect.stringContaining('No upstreams configured'));
    expect(warnings).toContainEqual(expect.stringContaining('No models configured'));

    if (!listening) {
      // The default port is held by another program on this machine. The warnings above were
      // still checked; the startup failure must then be a clean, explained exit.
      console.warn(`could not listen (${p.stderr().trim()}); checked the start-failure path instead`);
      const { code } = await p.exited;
      expect(code).toBe(1);
      expect(p.stderr()).toContain('EADDRINUSE');
      return;
    }
    expect(listening.config).toBeNull();
    expect(listening.backends).toEqual({ store: 'sqlite', limits: 'memory' });
    expect([`http://127.0.0.1:${port}`, `http://127.0.0.1:${DEFAULT_PORT}`]).toContain(listening.url);
    // The default data folder is relative to the working folder.
    expect(existsSync(join(cwd, 'data', 'guildgate.db'))).toBe(true);
    expect(await httpGet(`${listening.url}/readyz`)).toMatchObject({ status: 200 });

    p.child.kill('SIGTERM');
    expect(await p.exited).toEqual({ code: 0, signal: null });
    expect(p.stderr()).toBe('');
  });

  it('exits 2 on a bad config and names every bad field on stderr', async () => {
    const cwd = folder();
    const config = writeYaml(cwd, [
      'server: { port: -5, hots: 0.0.0.0 }',
      'defaultTier: gold',
      'limits: { budgetTimeZone: Moon/Tranquility }',
      'tiers:',
      '  free: { rpm: 10, tokensPerDay: -1, models: [gpt-9] }',
      'upstreams:',
      '  openai: { baseUrl: "not a url" }',
    ]);
    const p = startProcess(cwd, baseEnv({ GUILDGATE_CONFIG: config }));
    expect(await p.exited).toEqual({ code: 2, signal: null });
    const stderr = p.stderr();
    expect(stderr).toContain(config);
    for (const field of [
      'server.port',
      'server',
      'defaultTier',
      'limits.budgetTimeZone',
      'tiers.free.tokensPerDay',
      'tiers.free.models.0',
      'upstreams.openai.baseUrl',
    ]) {
      expect(stderr, field).toMatch(new RegExp(`^  - ${field.replace(/\./g, '\\.')}: `, 'm'));
    }
    expect(p.stdout()).toBe('');
    // Nothing was created: the process stopped before opening a store.
    expect(existsSync(join(cwd, 'data'))).toBe(false);
  });

  describe('with a fake upstream', () => {
    let upstream: FakeUpstream;

    interface Setup {
      config: string;
      dataDir: string;
      port: number;
      discordId: string;
      apiKey: string;
      keyId: string;
    }

    /** A config file on a free port and a data folder holding one issued key. */
    async function setup(discordId: string, shutdownGraceMs: number): Promise<Setup> {
      const cwd = folder();
      const dataDir = join(cwd, 'state');
      const port = await freePort();
      const config = writeYaml(cwd, [
        `server: { port: ${port}, shutdownGraceMs: ${shutdownGraceMs} }`,
        `dataDir: ${JSON.stringify(dataDir)}`,
        'storage: { store: sqlite, limits: memory }',
        'usage: { flushIntervalMs: 200 }',
        'tiers:',
        '  free: { rpm: 100, tokensPerDay: 100000, maxTokens: 256 }',
        'upstreams:',
        `  fake: { baseUrl: ${JSON.stringify(upstream.url)} }`,
        'models:',
        '  gpt-4o-mini: { routes: [{ upstream: fake, model: gpt-4o-mini }] }',
      ]);
      // Issue the key with the app use case, on services built from the same config (same SQLite file).
      const services = await buildServices(loadConfig({ GUILDGATE_CONFIG: config }, cwd), {
        log: createLogger('silent'),
      });
      try {
        const issued = await issueKey(services.keys, { discordId, actor: 'test' });
        if (!issued.ok) throw new Error(issued.message);
        return { config, dataDir, port, discordId, apiKey: issued.key, keyId: issued.record.id };
      } finally {
        await services.close();
      }
    }

    beforeAll(async () => {
      upstream = await startFakeUpstream({ name: 'fake' });
    });

    afterAll(async () => {
      await upstream?.close();
    });

    it('answers /healthz and /readyz with 200', async () => {
      const { config, port } = await setup('323456789012345671', 20_000);
      const p = startProcess(folder(), baseEnv({ GUILDGATE_CONFIG: config }));
      const listening = await p.waitForLog('guildgate relay listening');
      expect(listening, p.stderr()).not.toBeNull();
      expect(listening!.url).toBe(`http://127.0.0.1:${port}`);
      // A config with upstreams and models has nothing to warn about.
      expect(p.logs.filter((l) => l.level >= 40)).toEqual([]);

      const health = await httpGet(`http://127.0.0.1:${port}/healthz`);
      expect(health).toEqual({ status: 200, body: JSON.stringify({ status: 'ok' }) });
      const ready = await httpGet(`http://127.0.0.1:${port}/readyz`);
      expect(ready).toMatchObject({ status: 200 });
      expect(JSON.parse((ready as { body: string }).body)).toEqual({
        status: 'ready',
        backends: { store: 'sqlite', limits: 'memory' },
      });

      p.child.kill('SIGTERM');
      expect(await p.exited).toEqual({ code: 0, signal: null });
    });

    it('on SIGTERM stops taking work, finishes the stream in flight, records its usage and exits 0', async () => {
      const { config, port, apiKey, keyId, discordId, dataDir } = await setup('323456789012345672', 20_000);
      const p = startProcess(folder(), baseEnv({ GUILDGATE_CONFIG: config }));
      expect(await p.waitForLog('guildgate relay listening'), p.stderr()).not.toBeNull();

      // "hello from fake" as 3 content chunks + usage + [DONE], a second apart: ~4 s in flight.
      upstream.reset();
      upstream.next({ kind: 'slow-stream', chunkDelayMs: 1_000 });
      const client = new OpenAI({ apiKey, baseURL: `http://127.0.0.1:${port}/v1`, maxRetries: 0, timeout: 30_000 });
      const stream = await client.chat.completions.create({
        model: 'gpt-4o-mini',
        messages: [{ role: 'user', content: 'Say hello slowly' }],
        stream: true,
      });
      const iterator = stream[Symbol.asyncIterator]();
      const first = await iterator.next();
      expect(first.done).toBe(false);
      const pieces = [first.value.choices[0]?.delta.content ?? ''];

      p.child.kill('SIGTERM');
      // New work is refused: /readyz turns 503 or the listener is gone. Bounded poll, no fixed sleep.
      let answer: Awaited<ReturnType<typeof httpGet>> = { status: 200, body: '' };
      const deadline = Date.now() + 10_000;
      while ('status' in answer && answer.status === 200 && Date.now() < deadline) {
        answer = await httpGet(`http://127.0.0.1:${port}/readyz`);
      }
      if ('status' in answer) expect(answer.status).toBe(503);
      else expect(answer.error).toMatch(/ECONNREFUSED|ECONNRESET/);

      // The stream in flight still completes, every chunk of it.
      let finish: string | null = null;
      for (let r = await iterator.next(); !r.done; r = await iterator.next()) {
        pieces.push(r.value.choices[0]?.delta.content ?? '');
        finish = r.value.choices[0]?.finish_reason ?? finish;
      }
      expect(pieces.join('')).toBe('hello from fake');
      expect(finish).toBe('stop');
      expect(upstream.requests[0]?.state).toBe('finished');

      expect(await p.exited).toEqual({ code: 0, signal: null });
      expect(p.logs.filter((l) => l.level >= 50)).toEqual([]);
      // The stream really was in flight at shutdown: its access line comes after 'shutting down'.
      const order = p.logs.map((l) => (l.msg === 'request' && l.method === 'POST' ? 'POST' : l.msg));
      expect(order.indexOf('shutting down')).toBeGreaterThanOrEqual(0);
      expect(order.indexOf('POST')).toBeGreaterThan(order.indexOf('shutting down'));

      const store = SqliteStore.open(join(dataDir, 'guildgate.db'));
      try {
        const rows = await store.listUsage(discordId, 10);
        expect(rows).toHaveLength(1);
        expect(rows[0]).toMatchObject({
          keyId,
          discordId,
          model: 'gpt-4o-mini',
          upstream: 'fake',
          endpoint: 'chat.completions',
          stream: true,
          status: 'ok',
          httpStatus: 200,
          completionTokens: 3,
          estimated: false,
        });
      } finally {
        await store.close();
      }
    });

    it('never cuts a response it accepted on a kept-alive connection while draining', async () => {
      // Reverse proxies and SDKs keep connections open between requests. A request that arrives on
      // such a connection after SIGTERM must be refused (503 / connection closed) or served in full;
      // accepting it and cutting it at the grace deadline hands the client a truncated stream.
      const { config, port, apiKey } = await setup('323456789012345673', 6_000);
      const p = startProcess(folder(), baseEnv({ GUILDGATE_CONFIG: config }));
      expect(await p.waitForLog('guildgate relay listening'), p.stderr()).not.toBeNull();
      const agent = new Agent({ keepAlive: true, maxSockets: 1 });
      try {
        upstream.reset();
        // The first stream (~1.5 s) is in flight at SIGTERM; the second (~12 s) would outlast the grace.
        upstream.next({ kind: 'slow-stream', chunkDelayMs: 400 });
        upstream.next({ kind: 'slow-stream', chunkDelayMs: 3_000 });
        const url = `http://127.0.0.1:${port}/v1/chat/completions`;
        const chat = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], stream: true };
        const first = streamPost(url, apiKey, chat, agent);
        await first.headers;
        p.child.kill('SIGTERM');
        expect(await first.done).toMatchObject({ status: 200, complete: true });

        // Same agent, one socket: this goes over the connection the first stream used, if still open.
        const second = streamPost(url, apiKey, chat, agent);
        const outcome = await second.done;
        if ('status' in outcome && outcome.status === 200) {
          expect(outcome.complete, 'a stream accepted during draining was cut off').toBe(true);
        } else if ('status' in outcome) {
          expect(outcome.status).toBe(503);
        } else {
          expect(outcome.error).toMatch(/ECONNREFUSED|ECONNRESET|socket hang up/);
        }
        expect(await p.exited).toEqual({ code: 0, signal: null });
      } finally {
        agent.destroy();
      }
    });
  });
});
