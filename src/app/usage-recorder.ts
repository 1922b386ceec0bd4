// Writes usage records in batches off the request path. A failed write keeps the batch for the next
// flush (records are idempotent per request id, so a retry cannot double count); shutdown flushes.
import { BudgetCalendar } from '../domain/budget-day.js';
import type { Store } from '../domain/ports.js';
import type { UsageRecord } from '../domain/types.js';
import type { Metrics } from '../observability/types.js';

interface Log {
  error(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

/** Past this many queued records (store down for long), the oldest are dropped and counted. */
const MAX_QUEUED = 200_000;

export class UsageRecorder {
  private queue: UsageRecord[] = [];
  private timer: NodeJS.Timeout | null = null;
  private flushing: Promise<void> | null = null;
  private dropped = 0;
  private failing = false;
  private readonly dayOf: (r: UsageRecord) => string;

  constructor(
    private readonly store: Store,
    private readonly opts: { batchSize: number; flushIntervalMs: number; timeZone: string },
    private readonly log: Log,
    private readonly metrics: Pick<Metrics, 'relayed' | 'backendError' | 'usageDropped'>,
  ) {
    const calendar = new BudgetCalendar(opts.timeZone);
    this.dayOf = (r) => calendar.at(r.createdAt).day;
  }

  start(): void {
    this.timer ??= setInterval(() => void this.flush(), this.opts.flushIntervalMs);
    this.timer.unref();
  }

  /** Records waiting to be written (read when metrics are scraped). */
  get pending(): number {
    return this.queue.length;
  }

  record(r: UsageRecord): void {
    // Every relayed request passes here exactly once: the one place requests and tokens are counted.
    this.metrics.relayed(r);
    this.queue.push(r);
    if (this.queue.length > MAX_QUEUED) {
      // Drop a tenth at once, so a long outage does not pay an O(n) splice per request.
      const drop = Math.ceil(MAX_QUEUED / 10);
      this.queue.splice(0, drop);
      this.dropped += drop;
      this.metrics.usageDropped(drop);
    }
    if (this.queue.length >= this.opts.batchSize) void this.flush();
  }

  /** Writes everything queued so far. Never throws; failures are logged and retried later. */
  flush(): Promise<void> {
    this.flushing ??= this.drain().finally(() => {
      this.flushing = null;
    });
    return this.flushing;
  }

  private async drain(): Promise<void> {
    while (this.queue.length > 0) {
      const batch = this.queue.slice(0, this.opts.batchSize);
      try {
        await this.store.insertUsage(batch, this.dayOf);
      } catch (err) {
        this.metrics.backendError('store', 'usage_write');
        if (!this.failing) this.log.error({ err, pending: this.queue.length }, 'usage write failed; will retry');
        this.failing = true;
        return;
      }
      this.queue.splice(0, batch.length);
      if (this.failing) this.log.warn({ pending: this.queue.length }, 'usage writes recovered');
      this.failing = false;
    }
    if (this.dropped) {
      this.log.error({ dropped: this.dropped }, 'usage queue overflowed while the store was down');
      this.dropped = 0;
    }
  }

  /** Stops the timer and flushes, retrying until `deadline` while the store refuses. */
  async stop(deadline: number): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.flush();
    while (this.queue.length > 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 200));
      await this.flush();
    }
    if (this.queue.length > 0) this.log.error({ lost: this.queue.length }, 'usage records not written at shutdown');
  }
}
