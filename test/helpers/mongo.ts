// Where the MongoDB tests run: an operator-provided server (MONGODB_URI), else a throwaway mongod
// from PATH, else nowhere - and then the caller must say so loudly instead of passing silently.
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { access, mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { createConnection } from 'mongoose';

export interface MongoTarget {
  uri: string;
  stop(): Promise<void>;
}

export const MONGO_SKIP_REASON =
  'MongoDB leg skipped: MONGODB_URI is not set and no mongod binary is on PATH (start one with `docker compose up -d mongo` and set MONGODB_URI=mongodb://127.0.0.1:27017/guildgate_test)';

const START_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 10_000;

/** A database name no other test run uses. */
export function uniqueDatabaseName(): string {
  return `gg_test_${process.pid}_${randomBytes(6).toString('hex')}`;
}

/**
 * `uri` pointing at database `db`. When the URI carries credentials and no authSource, the original
 * database (or `admin`) stays the authentication database, since that is where the user lives.
 */
export function withDatabase(uri: string, db: string): string {
  const scheme = /^mongodb(\+srv)?:\/\//.exec(uri)?.[0];
  if (scheme === undefined) throw new Error('MONGODB_URI must start with mongodb:// or mongodb+srv://');
  const authorityEnd = uri.slice(scheme.length).search(/[/?]/);
  const authority = authorityEnd === -1 ? uri : uri.slice(0, scheme.length + authorityEnd);
  const tail = authorityEnd === -1 ? '' : uri.slice(scheme.length + authorityEnd);
  const queryStart = tail.indexOf('?');
  const path = queryStart === -1 ? tail : tail.slice(0, queryStart);
  const params = new URLSearchParams(queryStart === -1 ? '' : tail.slice(queryStart + 1));
  if (authority.includes('@') && !params.has('authSource')) {
    params.set('authSource', decodeURIComponent(path.replace(/^\//, '')) || 'admin');
  }
  const query = params.toString();
  return `${authority}/${db}${query ? `?${query}` : ''}`;
}

/** Drops the database named in `uri`. */
export async function dropDatabase(uri: string): Promise<void> {
  const conn = await createConnection(uri, { serverSelectionTimeoutMS: 5_000 }).asPromise();
  try {
    await conn.dropDatabase();
  } finally {
    await conn.destroy();
  }
}

export async function mongoTarget(): Promise<MongoTarget | { skip: string }> {
  const fromEnv = process.env.MONGODB_URI;
  if (fromEnv) {
    const uri = withDatabase(fromEnv, uniqueDatabaseName());
    return { uri, stop: () => dropDatabase(uri) };
  }
  const mongod = await findOnPath('mongod');
  if (mongod !== null) return startMongod(mongod);
  return { skip: MONGO_SKIP_REASON };
}

async function findOnPath(binary: string): Promise<string | null> {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir === '') continue;
    const candidate = join(dir, binary);
    try {
      await access(candidate, constants.X_OK);
      return candidate;
    } catch {
      // Not in this directory.
    }
  }
  return null;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => {
        if (typeof address === 'object' && address !== null) resolve(address.port);
        else reject(new Error('could not read the port of a probe socket'));
      });
    });
  });
}

async function startMongod(binary: string): Promise<MongoTarget> {
  const dbpath = await mkdtemp(join(tmpdir(), 'gg-mongod-'));
  const port = await freePort();
  const child = spawn(binary, ['--bind_ip', '127.0.0.1', '--port', String(port), '--dbpath', dbpath, '--quiet'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const uri = `mongodb://127.0.0.1:${port}/guildgate_test`;
  const stop = async () => {
    await stopChild(child, exited);
    await rm(dbpath, { recursive: true, force: true });
  };
  try {
    await waitUntilReady(uri, exited, () => stderr);
  } catch (err) {
    await stop();
    throw err;
  }
  return { uri, stop };
}

/** Polls until mongod answers a ping; fails early if it exits. */
async function waitUntilReady(uri: string, exited: Promise<number | null>, stderr: () => string): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  let exitCode: number | null | undefined;
  void exited.then((code) => {
    exitCode = code;
  });
  for (;;) {
    if (exitCode !== undefined) throw new Error(`mongod exited with code ${exitCode}: ${stderr().trim()}`);
    const conn = createConnection(uri, { serverSelectionTimeoutMS: 500 });
    try {
      await conn.asPromise();
      await conn.db?.command({ ping: 1 });
      return;
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`mongod did not accept connections on ${uri}`, { cause: err });
    } finally {
      await conn.destroy();
    }
  }
}

async function stopChild(child: ChildProcess, exited: Promise<number | null>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
  await exited;
  clearTimeout(timer);
}
