// The local gate (src/app/local-gate.ts): what it refuses before a body is read, and that it never
// refuses what the shared limits would admit.
import { describe, expect, it } from 'vitest';
import { LocalGate } from '../../src/app/local-gate.js';
import { RateLimitError } from '../../src/domain/errors.js';

const TIER = { rpm: 3, maxConcurrent: 2 };

function refusal(fn: () => unknown): RateLimitError {
  try {
    fn();
  } catch (err) {
    if (err instanceof RateLimitError) return err;
    throw err;
  }
  throw new Error('expected a refusal');
}

describe('local gate', () => {
  it('refuses a key whose window the shared limiter reported spent, until that window resets', () => {
    let now = 1_000_000;
    const gate = new LocalGate(() => now);
    const pass = gate.enter('k1', TIER);
    // Allowed with the last point of the minute: the next request would be refused by the shared limiter.
    pass.noteRate({ allowed: true, limit: 3, remaining: 0, resetMs: 20_000 }, now - 5);
    pass.leave();
    now += 1_000;
    const err = refusal(() => gate.enter('k1', TIER));
    expect(err.code).toBe('rate_limit_requests');
    expect(err.headers).toMatchObject({
      'x-ratelimit-limit-requests': '3',
      'x-ratelimit-remaining-requests': '0',
      'retry-after': '19',
    });
    // Other keys are not affected; the window ends when the shared one does (measured from the ask).
    gate.enter('k2', TIER).leave();
    now += 18_995;
    expect(() => gate.enter('k1', TIER).leave()).not.toThrow();
  });

  it('a window with points left, or one counted against another limit, refuses nothing', () => {
    const now = 5_000;
    const gate = new LocalGate(() => now);
    const pass = gate.enter('k1', TIER);
    pass.noteRate({ allowed: true, limit: 3, remaining: 1, resetMs: 30_000 }, now);
    pass.leave();
    gate.enter('k1', TIER).leave();
    const spent = gate.enter('k1', TIER);
    spent.noteRate({ allowed: false, limit: 3, remaining: 0, resetMs: 30_000 }, now);
    spent.leave();
    // The key moved to a tier with more requests per minute: its old window is not this limit's.
    expect(() => gate.enter('k1', { ...TIER, rpm: 10 }).leave()).not.toThrow();
  });

  it('refuses a key with as many requests in flight here as its tier allows; leaving frees one place once', () => {
    const gate = new LocalGate(() => 0);
    const a = gate.enter('k1', TIER);
    const b = gate.enter('k1', TIER);
    const err = refusal(() => gate.enter('k1', TIER));
    expect(err.code).toBe('rate_limit_concurrency');
    expect(err.headers['retry-after']).toBe('1');
    a.leave();
    a.leave();
    const c = gate.enter('k1', TIER);
    expect(() => gate.enter('k1', TIER)).toThrow(RateLimitError);
    b.leave();
    c.leave();
    gate.enter('k1', TIER);
    gate.enter('k1', TIER);
  });
});
