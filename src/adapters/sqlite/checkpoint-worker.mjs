// WAL checkpoints for the store's SQLite file, on this worker thread and its own connection, so
// copying the WAL back into the database never runs on the relay's event loop (the relay's
// connection has wal_autocheckpoint = 0). Plain JavaScript so it runs as is from src/ (tsx, tests)
// and from dist/ (the build copies it; see tsconfig.build.json).
import { statSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';

/** @type {{ file: string, intervalMs: number, idleMs: number, maxWalBytes: number, busyTimeoutMs: number }} */
const { file, intervalMs, idleMs, maxWalBytes, busyTimeoutMs } = workerData;

const db = new Database(file, { timeout: busyTimeoutMs });
db.pragma('wal_autocheckpoint = 0');
const passive = db.prepare('PRAGMA wal_checkpoint(PASSIVE)');
const truncate = db.prepare('PRAGMA wal_checkpoint(TRUNCATE)');
const dataVersion = db.prepare('PRAGMA data_version').pluck();

let lastVersion = dataVersion.get();
let lastChange = Date.now();
let timer;

function walBytes() {
  try {
    return statSync(`${file}-wal`).size;
  } catch {
    return 0;
  }
}

function tick() {
  // data_version moves when another connection commits: how the worker tells busy from idle.
  const version = dataVersion.get();
  const now = Date.now();
  if (version !== lastVersion) {
    lastVersion = version;
    lastChange = now;
  }
  // PASSIVE copies what it can without taking any lock a writer or reader waits on.
  const { log } = passive.get();
  const size = walBytes();
  // TRUNCATE blocks writers while it runs, so it comes right after a PASSIVE (little left to copy)
  // and only when the file is past its bound or nobody has written for a while.
  if (size > maxWalBytes || (size > 0 && log >= 0 && now - lastChange >= idleMs)) truncate.get();
}

function loop() {
  try {
    tick();
  } catch (err) {
    // SQLITE_BUSY and friends: the next tick tries again. Anything else is for the owner to see.
    if (!(err instanceof Database.SqliteError && err.code.startsWith('SQLITE_BUSY'))) throw err;
  }
  timer = setTimeout(loop, intervalMs);
}

parentPort.on('message', (msg) => {
  if (msg === 'stop') {
    clearTimeout(timer);
    db.close();
    parentPort.close();
    return;
  }
  // { checkpoint: id }: a PASSIVE checkpoint now, for a writer pacing itself (the retention purge).
  let result = { busy: 1, log: -1, checkpointed: -1 };
  try {
    result = passive.get();
  } catch (err) {
    if (!(err instanceof Database.SqliteError && err.code.startsWith('SQLITE_BUSY'))) throw err;
  }
  parentPort.postMessage({ id: msg.checkpoint, ...result });
});

timer = setTimeout(loop, intervalMs);
