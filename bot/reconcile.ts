// Re-checks every key holder against the server: once the bot is ready (catching up on whatever
// happened while it was down) and then every `reconcileIntervalMs`. The next run is scheduled when
// the last one ends, so runs never overlap.
import type { Logger } from 'pino';
import { type MembershipDeps, type MembershipPolicy, reconcileHolders, SYNC_ACTOR } from '../src/app/membership.js';
import { describeError } from './errors.js';

/** Failures logged one by one per run; the rest are counted. */
const LOGGED_FAILURES = 5;

export interface Reconciler {
  start(): void;
  /** Stops after the holder being checked and waits for that. */
  stop(): Promise<void>;
}

export function createReconciler(
  deps: MembershipDeps,
  policy: MembershipPolicy,
  intervalMs: number,
  log: Logger,
): Reconciler {
  const abort = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | null = null;

  async function runOnce(): Promise<void> {
    const started = Date.now();
    try {
      const r = await reconcileHolders(deps, policy, { actor: SYNC_ACTOR, signal: abort.signal });
      const summary = { checked: r.checked, changed: r.changed, failed: r.failed.length, ms: Date.now() - started };
      log.info(summary, 'membership reconciled');
      for (const f of r.failed.slice(0, LOGGED_FAILURES)) {
        log.warn({ userId: f.discordId, err: describeError(f.err) }, 'key holder not reconciled; the next run retries');
      }
    } catch (err) {
      log.warn({ err: describeError(err) }, 'membership reconcile failed; the next run retries');
    }
  }

  function loop(): void {
    running = runOnce().finally(() => {
      running = null;
      if (!abort.signal.aborted) timer = setTimeout(loop, intervalMs).unref();
    });
  }

  return {
    start: loop,
    async stop() {
      abort.abort();
      clearTimeout(timer);
      await running;
    },
  };
}
