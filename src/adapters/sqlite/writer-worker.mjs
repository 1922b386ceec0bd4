// Usage batch writes for the store's SQLite file, on this worker thread and its own connection, so
// neither the write itself nor waiting for another process's write lock (the busy timeout sleeps on
// the calling thread) ever runs on the relay's event loop. One message, one transaction; the answer
// says whether it committed. Plain JavaScript for the same reason as checkpoint-worker.mjs.
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { prepareUsageWrite } from './usage-writes.mjs';

/** @type {{ file: string, busyTimeoutMs: number, autocheckpoint: number }} */
const { file, busyTimeoutMs, autocheckpoint } = workerData;

const db = new Database(file, { timeout: busyTimeoutMs });
// Per connection, like the relay's: a commit syncs at checkpoints, not on every batch.
db.pragma('synchronous = NORMAL');
// 0 while the checkpoint worker runs: a commit here must not copy the WAL back itself.
db.pragma(`wal_autocheckpoint = ${Number(autocheckpoint)}`);
const writeUsage = prepareUsageWrite(db);

parentPort.on('message', (msg) => {
  if (msg === 'stop') {
    db.close();
    parentPort.close();
    return;
  }
  if (typeof msg.autocheckpoint === 'number') {
    db.pragma(`wal_autocheckpoint = ${Number(msg.autocheckpoint)}`);
    return;
  }
  try {
    writeUsage(msg.rows);
    parentPort.postMessage({ id: msg.id });
  } catch (err) {
    // The transaction rolled back. Code and message are what the owner rebuilds the error from
    // (a SqliteError's class does not survive the trip between threads).
    const e = /** @type {{ message?: unknown, code?: unknown }} */ (err ?? {});
    parentPort.postMessage({
      id: msg.id,
      error: { message: String(e.message ?? err), code: typeof e.code === 'string' ? e.code : null },
    });
  }
});
