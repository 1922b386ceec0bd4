// What the composition root hands to the relay, the CLI, the bot and the web: every adapter built
// once, behind its port.
import type { Logger } from 'pino';
import type { RedisClient } from './adapters/redis/client.js';
import type { LimitDeps } from './app/admission.js';
import type { InFlight } from './app/in-flight.js';
import type { KeyDeps } from './app/keys.js';
import type { LocalGate } from './app/local-gate.js';
import type { UsageRecorder } from './app/usage-recorder.js';
import type { KeyVerifier } from './app/verify-key.js';
import type { Config } from './config/schema.js';
import type { KeyEvents, RateLimiter, Store, Upstream } from './domain/ports.js';
import type { TokenMeter } from './domain/token-estimate.js';
import type { PromMetrics } from './observability/metrics.js';

export interface Services {
  config: Config;
  log: Logger;
  now: () => Date;
  store: Store;
  keyEvents: KeyEvents;
  /** The limits' Redis client when Redis is configured (the web keeps its sessions there). */
  redis?: RedisClient;
  upstream: Upstream;
  /** A token meter for one request: exact counts within a small CPU allowance, upper bounds after. */
  meter(): TokenMeter;
  verifier: KeyVerifier;
  usage: UsageRecorder;
  /** Relayed requests not yet recorded and settled. */
  inflight: InFlight;
  /** Failed authentications per client IP. */
  authFailures: RateLimiter;
  limits: LimitDeps;
  /** This process's pre-checks of relayed requests, before their body is read. */
  gate: LocalGate;
  keys: KeyDeps;
  /**
   * Prometheus metrics of this process (its own registry). Callers outside the composition root and
   * the /metrics endpoints use it through the `Metrics` interface of src/observability/types.ts.
   */
  metrics: PromMetrics;
  /** Which backends are in use, for logs and /readyz. */
  backends: { store: 'sqlite' | 'mongo'; limits: 'memory' | 'redis' };
  /** Flushes usage (until `deadline`, epoch ms) and closes every adapter. Idempotent. */
  close(deadline?: number): Promise<void>;
}
