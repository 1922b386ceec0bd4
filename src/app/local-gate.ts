// Refuses in process, before a request's body is read, what the shared limits would refuse anyway:
// a key whose request/minute window the shared limiter reported spent, or that already has as many
// requests in flight in this process as its tier allows. Both are lower bounds of the shared state
// (other replicas only add to them), so nothing is refused here that `admit` would let through, and
// a key over its limits gets no body read and no prompt estimated. What only the shared state knows
// (requests of the same key on other replicas, the day's budget) is decided by `admit` once the
// body is known, in one round trip; each such refusal spends one of the key's requests of the
// minute, so the work done for refused requests stays within what the key may spend anyway.
import type { TierConfig } from '../config/schema.js';
import type { RateDecision } from '../domain/ports.js';
import { inFlightRefusal, requestsRefusal } from './admission.js';

/** One request's place at the gate. */
export interface GatePass {
  /** Records the shared limiter's answer: a spent window is refused here until it resets. */
  noteRate(decision: RateDecision, askedAt: number): void;
  /** Frees the place. Idempotent. */
  leave(): void;
}

/** Spent windows kept before the expired ones are swept (each lives at most a minute anyway). */
const SWEEP_ABOVE = 10_000;

export class LocalGate {
  readonly #inFlight = new Map<string, number>();
  readonly #spent = new Map<string, { limit: number; until: number }>();

  constructor(private readonly now: () => number = Date.now) {}

  /** A place for one request of the key, or the refusal (a RateLimitError) the shared limits would give. */
  enter(keyId: string, tier: Pick<TierConfig, 'rpm' | 'maxConcurrent'>): GatePass {
    const spent = this.#spent.get(keyId);
    if (spent) {
      const left = spent.until - this.now();
      // A window counted against another limit (the key changed tier) says nothing about this one.
      if (left > 0 && spent.limit === tier.rpm) {
        throw requestsRefusal(tier.rpm, { allowed: false, limit: tier.rpm, remaining: 0, resetMs: left });
      }
      this.#spent.delete(keyId);
    }
    const inFlight = this.#inFlight.get(keyId) ?? 0;
    if (inFlight >= tier.maxConcurrent) throw inFlightRefusal(tier.maxConcurrent, {});
    this.#inFlight.set(keyId, inFlight + 1);
    let left = false;
    return {
      noteRate: (decision, askedAt) => {
        if (decision.remaining === 0) this.#noteSpent(keyId, decision.limit, askedAt + decision.resetMs);
      },
      leave: () => {
        if (left) return;
        left = true;
        const n = (this.#inFlight.get(keyId) ?? 1) - 1;
        if (n > 0) this.#inFlight.set(keyId, n);
        else this.#inFlight.delete(keyId);
      },
    };
  }

  #noteSpent(keyId: string, limit: number, until: number): void {
    if (this.#spent.size >= SWEEP_ABOVE && !this.#spent.has(keyId)) {
      const now = this.now();
      for (const [id, s] of this.#spent) if (s.until <= now) this.#spent.delete(id);
    }
    this.#spent.set(keyId, { limit, until });
  }
}
