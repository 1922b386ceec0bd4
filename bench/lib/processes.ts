// Child processes of the bench: each target runs TypeScript through tsx in its own Node process, so
// no two of them (nor the load generator) share an event loop.
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';

/** tsx's loader by absolute URL, so a child can run from any working directory. */
const TSX_LOADER = import.meta.resolve('tsx');
const OUTPUT_KEPT = 4_000;
const STOP_GRACE_MS = 10_000;

export interface Child {
  name: string;
  process: ChildProcess;
  /** The last few kilobytes the child wrote (stdout and stderr), for error messages. */
  output(): string;
  /** SIGTERM, then SIGKILL if it has not exited within the grace period. */
  stop(): Promise<void>;
}

const running = new Set<ChildProcess>();
// A bench that crashes or is interrupted must not leave servers behind.
process.once('exit', () => {
  for (const p of running) p.kill('SIGKILL');
});

function exited(p: ChildProcess): boolean {
  return p.exitCode !== null || p.signalCode !== null;
}

export function spawnTs(
  name: string,
  script: string,
  opts: { args?: string[]; cwd?: string; env?: NodeJS.ProcessEnv; nodeArgs?: string[] } = {},
): Child {
  const p = spawn(process.execPath, [...(opts.nodeArgs ?? []), '--import', TSX_LOADER, script, ...(opts.args ?? [])], {
    cwd: opts.cwd,
    env: opts.env ?? process.env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(p);
  p.once('exit', () => running.delete(p));
  let output = '';
  const keep = (d: Buffer) => {
    output = (output + d.toString()).slice(-OUTPUT_KEPT);
  };
  p.stdout?.on('data', keep);
  p.stderr?.on('data', keep);
  return {
    name,
    process: p,
    output: () => output,
    async stop() {
      if (exited(p)) return;
      const gone = once(p, 'exit');
      p.kill('SIGTERM');
      const timer = setTimeout(() => p.kill('SIGKILL'), STOP_GRACE_MS);
      await gone;
      clearTimeout(timer);
    },
  };
}

function diedError(child: Child): Error {
  const p = child.process;
  return new Error(`${child.name} exited early (${p.exitCode ?? p.signalCode}):\n${child.output()}`);
}

/** Waits for the child's first stdout line, a JSON object such as `{"url":"http://..."}`. */
export async function readyLine<T>(child: Child, timeoutMs: number): Promise<T> {
  const p = child.process;
  let buffered = '';
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => finish(new Error(`${child.name} not ready after ${timeoutMs} ms`)), timeoutMs);
    const onData = (d: Buffer) => {
      buffered += d.toString();
      const nl = buffered.indexOf('\n');
      if (nl < 0) return;
      try {
        finish(null, JSON.parse(buffered.slice(0, nl)) as T);
      } catch {
        finish(new Error(`${child.name} printed something unexpected:\n${child.output()}`));
      }
    };
    const onExit = () => finish(diedError(child));
    function finish(err: Error | null, value?: T) {
      clearTimeout(timer);
      p.stdout?.off('data', onData);
      p.off('exit', onExit);
      if (err) reject(err);
      else resolve(value as T);
    }
    p.stdout?.on('data', onData);
    p.once('exit', onExit);
  });
}

/** Polls `check` until it returns true, failing when the child dies or the deadline passes. */
export async function waitUntil(child: Child, check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (exited(child.process)) throw diedError(child);
    if (await check().catch(() => false)) return;
    await sleep(100);
  }
  throw new Error(`${child.name} not ready after ${timeoutMs} ms:\n${child.output()}`);
}
