// Budget days in a configured IANA zone (src/domain/budget-day.ts): the day key, the instant it
// resets (next local midnight, DST-aware) and calendar arithmetic on day keys.
import { describe, expect, it } from 'vitest';
import { BudgetCalendar, budgetDay, nextReset, shiftDay } from '../../src/domain/budget-day.js';

const HOUR = 3_600_000;
const at = (iso: string) => new Date(iso);

describe('budgetDay', () => {
  it('UTC: the day changes exactly at 00:00Z', () => {
    expect(budgetDay(at('2026-03-15T23:59:59.999Z'), 'UTC')).toBe('2026-03-15');
    expect(budgetDay(at('2026-03-16T00:00:00.000Z'), 'UTC')).toBe('2026-03-16');
  });

  it('Asia/Tokyo (UTC+9): the day changes at 15:00Z the evening before', () => {
    expect(budgetDay(at('2026-03-15T14:59:59.999Z'), 'Asia/Tokyo')).toBe('2026-03-15');
    expect(budgetDay(at('2026-03-15T15:00:00.000Z'), 'Asia/Tokyo')).toBe('2026-03-16');
  });

  it('America/Los_Angeles (UTC-8 in winter, UTC-7 in summer)', () => {
    expect(budgetDay(at('2026-01-15T07:59:59.999Z'), 'America/Los_Angeles')).toBe('2026-01-14');
    expect(budgetDay(at('2026-01-15T08:00:00.000Z'), 'America/Los_Angeles')).toBe('2026-01-15');
    expect(budgetDay(at('2026-07-04T06:59:59.999Z'), 'America/Los_Angeles')).toBe('2026-07-03');
    expect(budgetDay(at('2026-07-04T07:00:00.000Z'), 'America/Los_Angeles')).toBe('2026-07-04');
  });

  it('year boundaries: one instant is in different years in different zones', () => {
    const instant = at('2026-12-31T20:00:00Z');
    expect(budgetDay(instant, 'UTC')).toBe('2026-12-31');
    expect(budgetDay(instant, 'Asia/Tokyo')).toBe('2027-01-01');
    expect(budgetDay(at('2027-01-01T05:00:00Z'), 'America/Los_Angeles')).toBe('2026-12-31');
    expect(budgetDay(at('2027-01-01T08:00:00Z'), 'America/Los_Angeles')).toBe('2027-01-01');
  });

  it('America/New_York: both 01:30s of the repeated hour on 2026-11-01 are the same day', () => {
    expect(budgetDay(at('2026-11-01T05:30:00Z'), 'America/New_York')).toBe('2026-11-01'); // 01:30 EDT
    expect(budgetDay(at('2026-11-01T06:30:00Z'), 'America/New_York')).toBe('2026-11-01'); // 01:30 EST
  });
});

describe('nextReset', () => {
  it('UTC: the next 00:00Z, also across a year boundary', () => {
    expect(nextReset(at('2026-03-15T10:00:00Z'), 'UTC').toISOString()).toBe('2026-03-16T00:00:00.000Z');
    expect(nextReset(at('2026-03-15T00:00:00Z'), 'UTC').toISOString()).toBe('2026-03-16T00:00:00.000Z');
    expect(nextReset(at('2026-12-31T23:59:59.999Z'), 'UTC').toISOString()).toBe('2027-01-01T00:00:00.000Z');
  });

  it('Asia/Tokyo: local midnight is 15:00Z', () => {
    expect(nextReset(at('2026-03-15T10:00:00Z'), 'Asia/Tokyo').toISOString()).toBe('2026-03-15T15:00:00.000Z');
    expect(nextReset(at('2026-12-31T16:00:00Z'), 'Asia/Tokyo').toISOString()).toBe('2027-01-01T15:00:00.000Z');
  });

  it('America/Los_Angeles: 08:00Z in winter, 07:00Z in summer, and across New Year', () => {
    expect(nextReset(at('2026-01-15T12:00:00Z'), 'America/Los_Angeles').toISOString()).toBe('2026-01-16T08:00:00.000Z');
    expect(nextReset(at('2026-07-04T12:00:00Z'), 'America/Los_Angeles').toISOString()).toBe('2026-07-05T07:00:00.000Z');
    expect(nextReset(at('2026-12-31T20:00:00Z'), 'America/Los_Angeles').toISOString()).toBe('2027-01-01T08:00:00.000Z');
  });

  it('America/New_York 2026-03-08 (clocks spring forward): the day is 23 hours long', () => {
    const zone = 'America/New_York';
    const start = at('2026-03-08T05:00:00Z'); // 00:00 EST
    const end = at('2026-03-09T04:00:00Z'); // 00:00 EDT
    expect(nextReset(at('2026-03-07T17:00:00Z'), zone).toISOString()).toBe(start.toISOString());
    // Before the jump, in the gap's shadow, and after it: all reset at the same local midnight.
    for (const iso of [
      '2026-03-08T05:00:00Z',
      '2026-03-08T06:59:59Z',
      '2026-03-08T07:00:00Z',
      '2026-03-08T12:00:00Z',
      '2026-03-09T03:59:59Z',
    ]) {
      expect(nextReset(at(iso), zone).toISOString(), iso).toBe(end.toISOString());
      expect(budgetDay(at(iso), zone), iso).toBe('2026-03-08');
    }
    expect(end.getTime() - nextReset(new Date(start.getTime() - 1), zone).getTime()).toBe(23 * HOUR);
    expect(budgetDay(end, zone)).toBe('2026-03-09');
  });

  it('America/New_York 2026-11-01 (clocks fall back): the day is 25 hours long', () => {
    const zone = 'America/New_York';
    const start = at('2026-11-01T04:00:00Z'); // 00:00 EDT
    const end = at('2026-11-02T05:00:00Z'); // 00:00 EST
    expect(nextReset(at('2026-10-31T20:00:00Z'), zone).toISOString()).toBe(start.toISOString());
    for (const iso of [
      '2026-11-01T04:00:00Z',
      '2026-11-01T05:30:00Z', // 01:30 EDT
      '2026-11-01T06:30:00Z', // 01:30 EST, the hour again
      '2026-11-01T18:00:00Z',
      '2026-11-02T04:59:59.999Z',
    ]) {
      expect(nextReset(at(iso), zone).toISOString(), iso).toBe(end.toISOString());
    }
    expect(end.getTime() - start.getTime()).toBe(25 * HOUR);
    expect(budgetDay(new Date(end.getTime() - 1), zone)).toBe('2026-11-01');
    expect(budgetDay(end, zone)).toBe('2026-11-02');
  });

  it('America/Santiago 2026-09-06 (clocks spring forward at midnight): the day starts at 01:00 local', () => {
    // 00:00 -04 does not exist that night; the first instant of 2026-09-06 is 01:00 -03 = 04:00Z.
    const reset = nextReset(at('2026-09-05T16:00:00Z'), 'America/Santiago');
    expect(budgetDay(reset, 'America/Santiago')).toBe('2026-09-06');
    expect(reset.toISOString()).toBe('2026-09-06T04:00:00.000Z');
  });

  it('America/Havana 2026-03-07, last hour before a midnight jump: the reset is never in the past', () => {
    // 23:30 CST on 2026-03-07; the next day starts at 05:00Z (00:00 CST = 01:00 CDT).
    const now = at('2026-03-08T04:30:00Z');
    expect(budgetDay(now, 'America/Havana')).toBe('2026-03-07');
    const reset = nextReset(now, 'America/Havana');
    expect(reset.getTime()).toBeGreaterThan(now.getTime());
    expect(reset.toISOString()).toBe('2026-03-08T05:00:00.000Z');
  });

  // Property over a whole year (every 3 hours, off the hour): the reset is the first instant of the
  // next day.
  // Includes zones with half- and quarter-hour offsets, a 30-minute DST shift (Lord Howe), and zones
  // whose clocks spring forward at midnight, where local midnight does not exist on that day.
  it.each([
    'UTC',
    'Asia/Tokyo',
    'America/Los_Angeles',
    'America/New_York',
    'Europe/London',
    'Asia/Kathmandu',
    'Australia/Lord_Howe',
    'Pacific/Kiritimati',
    'America/Santiago',
    'America/Havana',
  ])('%s: the reset is always the first instant of the next budget day (2026)', (zone) => {
    const wrong: string[] = [];
    for (let t = Date.UTC(2026, 0, 1, 0, 7); t < Date.UTC(2027, 0, 1); t += 3 * HOUR) {
      const now = new Date(t);
      const day = budgetDay(now, zone);
      const reset = nextReset(now, zone);
      const ok =
        reset.getTime() > t &&
        budgetDay(new Date(reset.getTime() - 1), zone) === day &&
        budgetDay(reset, zone) === shiftDay(day, 1);
      if (!ok) wrong.push(`${now.toISOString()} (${day}) -> ${reset.toISOString()} (${budgetDay(reset, zone)})`);
    }
    expect(wrong.slice(0, 3), `${wrong.length} instants reset at the wrong time`).toEqual([]);
  });
});

describe('shiftDay', () => {
  it('moves forward and back by calendar days', () => {
    expect(shiftDay('2026-03-15', 1)).toBe('2026-03-16');
    expect(shiftDay('2026-03-15', -6)).toBe('2026-03-09');
    expect(shiftDay('2026-03-15', 0)).toBe('2026-03-15');
  });

  it('crosses month and year boundaries', () => {
    expect(shiftDay('2026-12-31', 1)).toBe('2027-01-01');
    expect(shiftDay('2027-01-01', -1)).toBe('2026-12-31');
    expect(shiftDay('2027-01-03', -6)).toBe('2026-12-28');
    expect(shiftDay('2026-04-30', 1)).toBe('2026-05-01');
  });

  it('knows leap years', () => {
    expect(shiftDay('2026-02-28', 1)).toBe('2026-03-01');
    expect(shiftDay('2028-02-28', 1)).toBe('2028-02-29');
    expect(shiftDay('2028-03-01', -1)).toBe('2028-02-29');
    expect(shiftDay('2100-02-28', 1)).toBe('2100-03-01');
  });

  it('is not affected by DST: the day after a 23-hour day is the next date', () => {
    expect(shiftDay('2026-03-08', 1)).toBe('2026-03-09');
    expect(shiftDay('2026-11-01', 1)).toBe('2026-11-02');
  });
});

describe('BudgetCalendar', () => {
  it('gives the same day and reset as budgetDay/nextReset, across a rollover and back in time', () => {
    const zone = 'America/New_York';
    const cal = new BudgetCalendar(zone);
    for (const iso of [
      '2026-03-07T17:00:00Z',
      '2026-03-07T23:00:00Z',
      '2026-03-08T05:00:00Z', // new local day
      '2026-03-08T07:30:00Z', // after the DST jump, same day
      '2026-03-09T04:00:00Z', // next local day
      '2026-03-07T20:00:00Z', // the clock went back
      '2026-11-01T06:30:00Z',
    ]) {
      const t = at(iso);
      expect(cal.at(t), iso).toEqual({ day: budgetDay(t, zone), resetAt: nextReset(t, zone).getTime() });
    }
  });

  it('rolls over exactly at the reset instant', () => {
    const cal = new BudgetCalendar('Asia/Tokyo');
    const before = cal.at(at('2026-12-31T14:59:59.999Z'));
    expect(before.day).toBe('2026-12-31');
    expect(before.resetAt).toBe(at('2026-12-31T15:00:00Z').getTime());
    expect(cal.at(at('2026-12-31T15:00:00Z')).day).toBe('2027-01-01');
  });
});
