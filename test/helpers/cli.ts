// Runs the operator CLI as a script would: `node bin/guildgate.mjs ...` from the repo root, with only
// stdout, stderr and the exit code to go on.
import { spawn } from 'node:child_process';
import { resolve } from 'node:path';

const REPO = resolve(import.meta.dirname, '../..');
const SPAWN_TIMEOUT_MS = 30_000;
/** Never picked up from the machine: each test says which of these it wants. */
const SERVICE_ENV = ['REDIS_URL', 'MONGODB_URI', 'DISCORD_BOT_TOKEN', 'DISCORD_CLIENT_SECRET'];

export interface CliRun {
  args: string[];
  code: number | null;
  stdout: string;
  stderr: string;
}

/** `env` is laid over the process environment without the service variables above. */
export function runCli(args: string[], env: Record<string, string | undefined>): Promise<CliRun> {
  const full: NodeJS.ProcessEnv = { ...process.env, LOG_LEVEL: 'warn' };
  for (const name of SERVICE_ENV) delete full[name];
  for (const [name, value] of Object.entries(env)) if (value !== undefined) full[name] = value;
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, ['bin/guildgate.mjs', ...args], { cwd: REPO, env: full });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), SPAWN_TIMEOUT_MS);
    child.once('error', fail);
    child.once('close', (code) => {
      clearTimeout(timer);
      done({ args, code, stdout, stderr });
    });
  });
}
