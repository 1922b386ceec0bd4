// Deletes per-request usage records older than the retention period. Daily aggregates stay.
import type { Store } from '../domain/ports.js';

const DAY_MS = 86_400_000;
const EVERY_MS = 60 * 60_000;

export async function purgeExpiredUsage(store: Store, retentionDays: number, now: Date): Promise<number> {
  return store.purgeUsage(new Date(now.getTime() - retentionDays * DAY_MS));
}

/** Purges once shortly after start, then hourly. Returns a stop function. */
export function scheduleRetention(
  store: Store,
  retentionDays: number,
  now: () => Date,
  log: { info(obj: object, msg: string): void; error(obj: object, msg: string): void },
): () => void {
  const run = async () => {
    try {
      const removed = await purgeExpiredUsage(store, retentionDays, now());
      if (removed > 0) log.info({ removed, retentionDays }, 'purged expired usage records');
    } catch (err) {
      log.error({ err }, 'usage retention purge failed; will retry');
    }
  };
  const first = setTimeout(run, 10_000);
  const timer = setInterval(run, EVERY_MS);
  first.unref();
  timer.unref();
  return () => {
    clearTimeout(first);
    clearInterval(timer);
  };
}
