// Budget days: calendar days in a configured IANA time zone. The day key is `YYYY-MM-DD` local to
// that zone, and the reset instant is the next local midnight (DST-aware).

const formatters = new Map<string, Intl.DateTimeFormat>();

function parts(at: Date, timeZone: string): Record<string, number> {
  let f = formatters.get(timeZone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone,
      hourCycle: 'h23',
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
      hour: '2-digit',
      minute: '2-digit',
      second: '2-digit',
    });
    formatters.set(timeZone, f);
  }
  const out: Record<string, number> = {};
  for (const p of f.formatToParts(at)) if (p.type !== 'literal') out[p.type] = Number(p.value);
  return out;
}

/** Offset of `timeZone` from UTC at instant `at`, in milliseconds. */
function offsetMs(at: Date, timeZone: string): number {
  const p = parts(at, timeZone);
  const asUtc = Date.UTC(p.year!, p.month! - 1, p.day!, p.hour!, p.minute!, p.second!);
  return asUtc - Math.floor(at.getTime() / 1000) * 1000;
}

export function budgetDay(at: Date, timeZone: string): string {
  const p = parts(at, timeZone);
  return `${p.year}-${String(p.month).padStart(2, '0')}-${String(p.day).padStart(2, '0')}`;
}

/** The instant the budget day containing `at` ends. */
export function nextReset(at: Date, timeZone: string): Date {
  const p = parts(at, timeZone);
  const localMidnight = Date.UTC(p.year!, p.month! - 1, p.day! + 1);
  // Guess with the current offset, then correct once for a DST change in between.
  let guess = localMidnight - offsetMs(at, timeZone);
  guess = localMidnight - offsetMs(new Date(guess), timeZone);
  return new Date(guess);
}

/** `YYYY-MM-DD` of `days` days before `day` (calendar arithmetic, zone-free). */
export function shiftDay(day: string, days: number): string {
  const [y, m, d] = day.split('-').map(Number);
  return new Date(Date.UTC(y!, m! - 1, d! + days)).toISOString().slice(0, 10);
}

/**
 * The current budget day and its reset instant, recomputed only when the day rolls over: the
 * time-zone maths is too slow to repeat on every request.
 */
export class BudgetCalendar {
  private day = '';
  private start = 0;
  private resetAt = 0;

  constructor(readonly timeZone: string) {}

  at(now: Date): { day: string; resetAt: number } {
    const t = now.getTime();
    if (t < this.start || t >= this.resetAt) {
      this.day = budgetDay(now, this.timeZone);
      this.resetAt = nextReset(now, this.timeZone).getTime();
      // The cached day is valid from now until the reset (earlier instants are recomputed).
      this.start = t;
    }
    return { day: this.day, resetAt: this.resetAt };
  }
}
