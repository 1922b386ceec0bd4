// Takes a SQLite file's write lock from another process, as a CLI run, a second replica or a backup
// would: in-process it would block the test's own event loop along with the relay's.
import { spawn } from 'node:child_process';
import { resolve } from 'node:path';

const REPO = resolve(import.meta.dirname, '../..');

/** Holds the file's write lock from another process for `ms`; resolves when it is held. */
export async function lockStore(file: string, ms: number): Promise<{ released: Promise<number | null> }> {
  const script = `
    const Database = require('better-sqlite3');
    const db = new Database(process.env.DB_FILE);
    db.exec('BEGIN EXCLUSIVE');
    process.stdout.write('locked\\n');
    setTimeout(() => { db.exec('COMMIT'); db.close(); }, Number(process.env.LOCK_MS));`;
  const child = spawn(process.execPath, ['-e', script], {
    cwd: REPO,
    env: { ...process.env, DB_FILE: file, LOCK_MS: String(ms) },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const released = new Promise<number | null>((done) => child.once('exit', (code) => done(code)));
  await new Promise<void>((done, fail) => {
    child.stdout.on('data', (d: Buffer) => {
      if (d.toString().includes('locked')) done();
    });
    child.once('exit', (code) => fail(new Error(`lock holder exited early (${code})`)));
  });
  return { released };
}
