// Starts a real relay (HTTP on a free loopback port, real SQLite file, chosen limit backend) in
// front of fake upstreams, and hands out keys and official `openai` clients pointed at it.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import OpenAI from 'openai';
import { issueKey } from '../../src/app/keys.js';
import { buildConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/logger.js';
import { type RunningRelay, startRelay } from '../../src/server.js';

export const DEFAULT_TIER = { rpm: 1000, maxConcurrent: 20, tokensPerDay: 1_000_000, maxTokens: 256, models: ['*'] };

export interface TestRelayOptions {
  /** Upstream name → base URL. Every chat model routes through them in this order. */
  upstreams: Record<string, string>;
  tiers?: Record<string, Partial<typeof DEFAULT_TIER>>;
  /** Extra config merged over the defaults (server, limits, usage, storage, models...). */
  config?: Record<string, unknown>;
  env?: Record<string, string>;
  /** Reuse a data dir (for two relays on one SQLite file). */
  dataDir?: string;
}

export interface TestRelay {
  relay: RunningRelay;
  /** Base URL for API clients, ending in /v1. */
  baseURL: string;
  url: string;
  dataDir: string;
  /** Every log line the relay wrote, raw JSON text. */
  logs: string[];
  issue(discordId?: string, tier?: string): Promise<{ key: string; keyId: string; discordId: string }>;
  client(apiKey: string, opts?: { maxRetries?: number; timeout?: number }): OpenAI;
  stop(): Promise<void>;
}

let userSeq = 0;
/** A fresh, valid-looking Discord snowflake per call. */
export function newDiscordId(): string {
  userSeq += 1;
  return `${(BigInt(Date.now()) << 22n) + BigInt(process.pid * 1000 + userSeq)}`;
}

export async function startTestRelay(o: TestRelayOptions): Promise<TestRelay> {
  const ownDir = !o.dataDir;
  const dataDir = o.dataDir ?? mkdtempSync(join(tmpdir(), 'gg-relay-'));
  const names = Object.keys(o.upstreams);
  const tiers = Object.fromEntries(
    Object.entries(o.tiers ?? { free: {} }).map(([n, t]) => [n, { ...DEFAULT_TIER, ...t }]),
  );
  const raw = {
    server: { port: 0, host: '127.0.0.1', shutdownGraceMs: 5_000 },
    dataDir,
    storage: { store: 'sqlite', limits: 'memory' },
    defaultTier: Object.keys(tiers)[0],
    tiers,
    upstreams: Object.fromEntries(
      names.map((n) => [
        n,
        { baseUrl: o.upstreams[n], timeouts: { connectMs: 2_000, firstByteMs: 5_000, idleMs: 5_000 } },
      ]),
    ),
    models: {
      'gpt-4o-mini': { routes: names.map((n) => ({ upstream: n, model: 'gpt-4o-mini' })) },
      'text-embedding-3-small': {
        kind: 'embedding',
        routes: names.map((n) => ({ upstream: n, model: 'text-embedding-3-small' })),
      },
    },
    usage: { flushIntervalMs: 50 },
    ...o.config,
  };
  const config = buildConfig(raw, { LOG_LEVEL: 'info', ...o.env }, 'test');
  const logs: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      logs.push(...String(chunk).split('\n').filter(Boolean));
      cb();
    },
  });
  const relay = await startRelay(config, { log: createLogger('info', sink) });
  const baseURL = `${relay.url}/v1`;
  return {
    relay,
    url: relay.url,
    baseURL,
    dataDir,
    logs,
    async issue(discordId = newDiscordId(), tier) {
      const r = await issueKey(relay.services.keys, { discordId, tier, actor: 'test' });
      if (!r.ok) throw new Error(r.message);
      return { key: r.key, keyId: r.record.id, discordId };
    },
    client(apiKey, opts) {
      return new OpenAI({ apiKey, baseURL, maxRetries: opts?.maxRetries ?? 0, timeout: opts?.timeout ?? 20_000 });
    },
    async stop() {
      await relay.stop();
      if (ownDir) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
