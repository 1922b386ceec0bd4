// Starts and stops the WAL checkpoint worker (checkpoint-worker.mjs) for one SQLite file.
import { Worker } from 'node:worker_threads';
import { workerExecArgv } from './threads.js';

export interface CheckpointOptions {
  /** How often the worker runs a PASSIVE checkpoint (default 250 ms). */
  intervalMs?: number;
  /** After this long without a commit, the WAL file is truncated to zero (default 30 s). */
  idleMs?: number;
  /** Past this size, the WAL file is truncated right after the next PASSIVE checkpoint (default 64 MiB). */
  maxWalBytes?: number;
}

const DEFAULTS: Required<CheckpointOptions> = { intervalMs: 250, idleMs: 30_000, maxWalBytes: 64 * 1024 * 1024 };
/** How long the worker's TRUNCATE waits for a writer to finish before trying again on a later tick. */
const WORKER_BUSY_TIMEOUT_MS = 100;

// Next to this module in src/ and in dist/ alike (the build emits .mjs files as .mjs).
const WORKER_URL = new URL('./checkpoint-worker.mjs', import.meta.url);

export class CheckpointWorker {
  private stopping: Promise<void> | null = null;
  private gone = false;
  private nextId = 0;
  private readonly pending = new Map<number, () => void>();

  private constructor(
    private readonly worker: Worker,
    private readonly exited: Promise<void>,
  ) {
    worker.on('message', (msg: { id: number }) => {
      this.pending.get(msg.id)?.();
      this.pending.delete(msg.id);
      if (this.pending.size === 0 && this.stopping === null) worker.unref();
    });
    // A worker that is gone answers nobody: release whoever waits.
    void exited.then(() => {
      this.gone = true;
      for (const done of this.pending.values()) done();
      this.pending.clear();
    });
  }

  /** `onFailure` runs if the worker dies, so the owner can fall back to checkpointing itself. */
  static start(file: string, opts: CheckpointOptions, onFailure: (err: unknown) => void): CheckpointWorker {
    const worker = new Worker(WORKER_URL, {
      workerData: { ...DEFAULTS, ...opts, file, busyTimeoutMs: WORKER_BUSY_TIMEOUT_MS },
      execArgv: workerExecArgv(),
    });
    const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
    const self = new CheckpointWorker(worker, exited);
    worker.on('error', (err) => {
      if (self.stopping === null) onFailure(err);
    });
    // A store someone forgot to close must not keep the process alive.
    worker.unref();
    return self;
  }

  /**
   * Resolves once the worker has run a PASSIVE checkpoint, copying what is in the WAL back into
   * the database; a writer that waits for it before writing again lets SQLite start the WAL over
   * instead of growing it. Resolves at once when the worker is stopping or gone.
   */
  checkpoint(): Promise<void> {
    if (this.stopping !== null || this.gone) return Promise.resolve();
    const id = this.nextId++;
    // Someone waits on the answer: the process must not exit before it comes.
    if (this.pending.size === 0) this.worker.ref();
    return new Promise<void>((resolve) => {
      this.pending.set(id, resolve);
      this.worker.postMessage({ checkpoint: id });
    });
  }

  /** Asks the worker to close its connection and waits until the thread has exited. */
  stop(): Promise<void> {
    if (this.stopping === null) {
      // Referenced again so the process waits for the thread to close its connection.
      this.worker.ref();
      this.worker.postMessage('stop');
      this.stopping = this.exited;
    }
    return this.stopping;
  }
}
