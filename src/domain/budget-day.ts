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

export function budgetDay(at: Date, timeZone: string): string {
  const p = parts(at, timeZone);
  return `${p.year}-${String(p.month).padStart(2, '0')}-${String(p.day).padStart(2, '0')}`;
}

const MINUTE = 60_000;

/**
 * The instant the budget day containing `at` ends: the first minute whose local date is later.
 * Found by bisection rather than offset arithmetic, because some zones skip local midnight itself
 * when their clocks jump forward (then the day starts at 01:00). Offsets change on whole minutes.
 */
export function nextReset(at: Date, timeZone: string): Date {
  const today = budgetDay(at, timeZone);
  // Local days last at most 25 hours (DST), so the next one starts within 26 hours of `at`.
  let lo = Math.floor(at.getTime() / MINUTE); // in today
  let hi = lo + 26 * 60; // past today
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (budgetDay(new Date(mid * MINUTE), timeZone) === today) lo = mid;
    else hi = mid;
  }
  return new Date(hi * MINUTE);
}

/** `YYYY-MM-DD` moved by `days` days (negative: earlier). Calendar arithmetic, zone-free. */
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
