// Limits failed authentications per client address. Only failures are counted and refused: a valid
// key is never turned away because others behind the same address (a NAT, an attacker) failed.
import type { RateLimiter } from '../domain/ports.js';

const MAX_BLOCKED = 10_000;

export class AuthThrottle {
  /** Addresses the shared limiter refused, until when; spares it a round trip per failed attempt. */
  readonly #blocked = new Map<string, number>();

  constructor(
    private readonly limiter: RateLimiter,
    private readonly perMinute: number,
    private readonly clock: () => number = Date.now,
    private readonly maxBlocked = MAX_BLOCKED,
  ) {}

  /** Counts a failed attempt from `ip`. Returns 0 while under the limit, else ms until it may retry. */
  async fail(ip: string): Promise<number> {
    const until = this.#blocked.get(ip);
    if (until !== undefined) {
      const left = until - this.clock();
      if (left > 0) return left;
      this.#blocked.delete(ip);
    }
    const d = await this.limiter.consume(`ip:${ip}`, this.perMinute);
    if (d.allowed) return 0;
    if (this.#blocked.size >= this.maxBlocked) this.#sweep();
    this.#blocked.set(ip, this.clock() + d.resetMs);
    return d.resetMs;
  }

  /** Addresses in the memo (for tests and metrics). */
  get blockedCount(): number {
    return this.#blocked.size;
  }

  /** Drops expired blocks; if all are live, the oldest half (an attack from many addresses). */
  #sweep(): void {
    const now = this.clock();
    for (const [ip, until] of this.#blocked) if (until <= now) this.#blocked.delete(ip);
    if (this.#blocked.size < this.maxBlocked) return;
    let drop = this.#blocked.size / 2;
    for (const ip of this.#blocked.keys()) {
      if (drop-- <= 0) break;
      this.#blocked.delete(ip);
    }
  }
}
