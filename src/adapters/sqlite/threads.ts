// Options shared by the store's worker threads.

/**
 * The parent's Node options minus `--input-type`, which a worker (started from a file) refuses: a
 * store opened from `node --input-type=module -e ...` would lose its threads. Loaders such as
 * `--import tsx` stay, so the threads run under the same setup as their owner.
 */
export function workerExecArgv(): string[] {
  return process.execArgv.filter((arg, i, all) => !arg.startsWith('--input-type') && all[i - 1] !== '--input-type');
}
