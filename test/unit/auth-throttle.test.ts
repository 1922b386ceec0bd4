// The failed-authentication throttle on a fake clock, with a fixed-window limiter on the same clock.
import { describe, expect, it } from 'vitest';
import { AuthThrottle } from '../../src/app/auth-throttle.js';
import type { RateDecision, RateLimiter } from '../../src/domain/ports.js';

const WINDOW_MS = 60_000;

/** Fixed one-minute windows on the test's clock; counts round trips. */
class ClockedLimiter implements RateLimiter {
  calls = 0;
  readonly #windows = new Map<string, { start: number; used: number }>();
  constructor(private readonly clock: () => number) {}

  async consume(subject: string, perMinute: number): Promise<RateDecision> {
    this.calls++;
    const now = this.clock();
    let w = this.#windows.get(subject);
    if (!w || now >= w.start + WINDOW_MS) {
      w = { start: now, used: 0 };
      this.#windows.set(subject, w);
    }
    w.used++;
    const resetMs = w.start + WINDOW_MS - now;
    return { allowed: w.used <= perMinute, limit: perMinute, remaining: Math.max(0, perMinute - w.used), resetMs };
  }
}

function setup(perMinute: number, maxBlocked?: number) {
  let now = 1_000_000;
  const clock = () => now;
  const limiter = new ClockedLimiter(clock);
  const throttle = new AuthThrottle(limiter, perMinute, clock, maxBlocked);
  return { throttle, limiter, advance: (ms: number) => (now += ms) };
}

describe('AuthThrottle', () => {
  it('blocks an address over the limit, then lets its failures through as plain 401s once the window passed', async () => {
    const { throttle, limiter, advance } = setup(3);
    for (let i = 0; i < 3; i++) expect(await throttle.fail('10.0.0.1')).toBe(0);
    expect(await throttle.fail('10.0.0.1')).toBe(WINDOW_MS);
    expect(await throttle.fail('10.0.0.2')).toBe(0); // other addresses are unaffected

    // Repeated refusals come from the memo, with a wait that counts down and never exceeds the window.
    const calls = limiter.calls;
    for (const step of [1_000, 20_000, 38_999]) {
      advance(step);
      const wait = await throttle.fail('10.0.0.1');
      expect(wait).toBeGreaterThan(0);
      expect(wait).toBeLessThanOrEqual(WINDOW_MS);
    }
    expect(await throttle.fail('10.0.0.1')).toBe(1);
    expect(limiter.calls).toBe(calls);

    advance(1);
    expect(await throttle.fail('10.0.0.1')).toBe(0);
    expect(limiter.calls).toBe(calls + 1);
  });

  it('keeps the memo bounded under failures from many addresses', async () => {
    const { throttle } = setup(1, 8);
    for (let i = 0; i < 50; i++) {
      await throttle.fail(`10.0.1.${i}`);
      expect(await throttle.fail(`10.0.1.${i}`)).toBeGreaterThan(0);
    }
    expect(throttle.blockedCount).toBeLessThanOrEqual(8);
    expect(throttle.blockedCount).toBeGreaterThan(0);
  });
});
