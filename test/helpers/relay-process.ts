// The relay and the operator CLI as real processes (`node --import tsx ...`), the way replicas run in
// production. A relay listens on port 0 (the OS picks a free port, no race) and its URL is read from
// its startup log line. A group remembers every process it started so afterAll can kill them all.
import { type ChildProcess, spawn } from 'node:child_process';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const REPO = resolve(import.meta.dirname, '../..');
const TSX = pathToFileURL(join(REPO, 'node_modules/tsx/dist/loader.mjs')).href;
const MAIN = join(REPO, 'src/main.ts');
const CLI = join(REPO, 'bin/guildgate.mjs');
const START_TIMEOUT_MS = 30_000;
const CLI_TIMEOUT_MS = 30_000;

export interface LogLine {
  level: number;
  msg: string;
  time: string;
  [k: string]: unknown;
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface RelayProcess {
  url: string;
  child: ChildProcess;
  /** Every JSON log line written to stdout so far. */
  logs: LogLine[];
  /** stdout and stderr as text, for failure messages. */
  output(): string;
  /** The first log line (already written or still to come) whose message contains `text`. */
  waitForLog(text: string, timeoutMs?: number): Promise<LogLine>;
  /** Sends `signal` (SIGTERM: graceful, flushes usage) and resolves with how the process ended. */
  stop(signal?: NodeJS.Signals): Promise<Exit>;
}

export interface CliResult extends Exit {
  stdout: string;
  stderr: string;
}

export interface ProcessGroup {
  /** Starts `src/main.ts` in `cwd` (so no `.env` of the checkout is read) and waits until it listens. */
  relay(cwd: string, env: Record<string, string>): Promise<RelayProcess>;
  /** Runs `bin/guildgate.mjs <args>` to completion. */
  cli(cwd: string, env: Record<string, string>, args: string[]): Promise<CliResult>;
  /** SIGKILLs whatever is still running. */
  killAll(): Promise<void>;
}

/** The test's environment minus anything that would pick backends or config behind the test's back. */
function childEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const name of ['MONGODB_URI', 'REDIS_URL', 'GUILDGATE_CONFIG', 'LOG_LEVEL']) delete env[name];
  return { ...env, ...extra };
}

function exited(child: ChildProcess): Promise<Exit> {
  if (child.exitCode !== null || child.signalCode !== null) {
    return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  }
  return new Promise((done) => child.once('exit', (code, signal) => done({ code, signal })));
}

export function processGroup(): ProcessGroup {
  const children = new Set<ChildProcess>();

  function track(child: ChildProcess): ChildProcess {
    children.add(child);
    child.once('exit', () => children.delete(child));
    return child;
  }

  async function relay(cwd: string, env: Record<string, string>): Promise<RelayProcess> {
    const child = track(spawn(process.execPath, ['--import', TSX, MAIN], { cwd, env: childEnv(env) }));
    const logs: LogLine[] = [];
    let out = '';
    let partial = '';
    const listeners = new Set<() => void>();
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      const lines = (partial + d.toString()).split('\n');
      partial = lines.pop() ?? '';
      for (const raw of lines) {
        try {
          logs.push(JSON.parse(raw) as LogLine);
        } catch {
          // Not a log line (e.g. a stray print): kept in `out` only.
        }
      }
      for (const l of listeners) l();
    });
    child.stderr?.on('data', (d: Buffer) => {
      out += d.toString();
    });
    const output = () => out;

    function waitForLog(text: string, timeoutMs = START_TIMEOUT_MS): Promise<LogLine> {
      return new Promise((done, fail) => {
        const check = () => {
          const line = logs.find((l) => typeof l.msg === 'string' && l.msg.includes(text));
          if (line) finish(() => done(line));
          else if (child.exitCode !== null || child.signalCode !== null) {
            finish(() => fail(new Error(`relay exited before logging "${text}":\n${out}`)));
          }
        };
        const timer = setTimeout(
          () => finish(() => fail(new Error(`no "${text}" log within ${timeoutMs} ms:\n${out}`))),
          timeoutMs,
        );
        const finish = (settle: () => void) => {
          clearTimeout(timer);
          listeners.delete(check);
          child.off('exit', check);
          settle();
        };
        listeners.add(check);
        child.once('exit', check);
        check();
      });
    }

    const listening = await waitForLog('guildgate relay listening');
    return {
      url: String(listening.url),
      child,
      logs,
      output,
      waitForLog,
      stop(signal = 'SIGTERM') {
        const done = exited(child);
        if (child.exitCode === null && child.signalCode === null) child.kill(signal);
        return done;
      },
    };
  }

  async function cli(cwd: string, env: Record<string, string>, args: string[]): Promise<CliResult> {
    const child = track(spawn(process.execPath, [CLI, ...args], { cwd, env: childEnv(env) }));
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr?.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), CLI_TIMEOUT_MS);
    // 'close' (not 'exit') so everything the CLI printed has been read.
    const exit = await new Promise<Exit>((done) => child.once('close', (code, signal) => done({ code, signal })));
    clearTimeout(timer);
    return { ...exit, stdout, stderr };
  }

  async function killAll(): Promise<void> {
    await Promise.all(
      [...children].map((c) => {
        const done = exited(c);
        c.kill('SIGKILL');
        return done;
      }),
    );
  }

  return { relay, cli, killAll };
}
