// Starts, feeds and stops the usage writer thread (writer-worker.mjs) for one SQLite file, and
// loads the batch write it shares with the store's own connection (usage-writes.mjs).
import { Worker } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { workerExecArgv } from './threads.js';

/** A usage record in the column order of the usage_requests INSERT. */
export type UsageParams = [
  string,
  string,
  string,
  string,
  string | null,
  string,
  number,
  number,
  number,
  number,
  string,
  number,
  number,
  number,
  number,
];
/** A record and the day its aggregate is kept under: plain data, so it can be posted to the thread. */
export interface UsageRow {
  params: UsageParams;
  day: string;
}

interface UsageWrites {
  prepareUsageWrite(db: Database.Database): (rows: UsageRow[]) => void;
}

// Next to this module in src/ and in dist/ alike (the build emits .mjs files as .mjs). Loaded by
// URL rather than imported: a declaration file next to it would keep the build from emitting it.
const WORKER_URL = new URL('./writer-worker.mjs', import.meta.url);
const shared = (await import(new URL('./usage-writes.mjs', import.meta.url).href)) as UsageWrites;

/** The batch write on `db` itself, for the stores that cannot use the thread. */
export const prepareUsageWrite = shared.prepareUsageWrite;

interface Pending {
  resolve: () => void;
  reject: (err: unknown) => void;
}

type Answer = { id: number; error?: { message: string; code: string | null } };

/** Rebuilds the thread's error, so callers see the same SqliteError codes as from a direct write. */
function rebuild(e: NonNullable<Answer['error']>): Error {
  return e.code === null ? new Error(e.message) : new Database.SqliteError(e.message, e.code);
}

export class UsageWriter {
  private stopping: Promise<void> | null = null;
  private dead = false;
  private nextId = 0;
  private readonly pending = new Map<number, Pending>();

  private constructor(
    private readonly worker: Worker,
    private readonly exited: Promise<void>,
  ) {
    worker.on('message', (msg: Answer) => {
      const p = this.pending.get(msg.id);
      this.pending.delete(msg.id);
      if (msg.error) p?.reject(rebuild(msg.error));
      else p?.resolve();
      if (this.pending.size === 0 && this.stopping === null) worker.unref();
    });
    worker.on('error', (err) => this.fail(err));
    void exited.then(() => this.fail(new Error('The SQLite usage writer thread exited')));
  }

  /**
   * `busyTimeoutMs`: how long the thread waits for another writer before a batch fails with
   * SQLITE_BUSY. `autocheckpoint`: its connection's wal_autocheckpoint (0 while the checkpoint
   * worker runs).
   */
  static start(file: string, opts: { busyTimeoutMs: number; autocheckpoint: number }): UsageWriter {
    const worker = new Worker(WORKER_URL, { workerData: { file, ...opts }, execArgv: workerExecArgv() });
    const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
    const self = new UsageWriter(worker, exited);
    // A store someone forgot to close must not keep the process alive.
    worker.unref();
    return self;
  }

  /** True once the thread has died (not merely stopped): the owner then writes on its own connection. */
  get gone(): boolean {
    return this.dead && this.stopping === null;
  }

  /** Writes a batch in one transaction on the thread; rejects, with nothing committed, if it failed. */
  write(rows: UsageRow[]): Promise<void> {
    if (this.stopping !== null) return Promise.reject(new Error('The SQLite store is closed'));
    if (this.dead) return Promise.reject(new Error('The SQLite usage writer thread exited'));
    const id = this.nextId++;
    // Someone waits on the answer: the process must not exit before it comes.
    if (this.pending.size === 0) this.worker.ref();
    return new Promise<void>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ id, rows });
    });
  }

  /** Changes the thread connection's wal_autocheckpoint (the checkpoint worker died: checkpoint on commit). */
  setAutocheckpoint(pages: number): void {
    if (!this.dead && this.stopping === null) this.worker.postMessage({ autocheckpoint: pages });
  }

  /** Lets the batches already posted finish, closes the thread's connection and waits for the thread to exit. */
  stop(): Promise<void> {
    if (this.stopping === null) {
      this.worker.ref();
      // Messages are handled in order: every batch posted before this one is written first.
      this.worker.postMessage('stop');
      this.stopping = this.exited;
    }
    return this.stopping;
  }

  /** A thread that is gone answers nobody: fail whoever waits (their batches stay with the caller). */
  private fail(err: unknown): void {
    this.dead = true;
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }
}
