// `npm run bench:soak`: does Guildgate's memory level off under sustained load, and does its
// throughput hold? Drives chat completions (closed loop at full speed, or a fixed rate; one key or
// many; JSON and streams mixed) for a while and watches the relay process's RSS and latency.
// See bench/README.md ("Soak and stall").
import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { Pool } from 'undici';
import { startRedis } from '../test/helpers/redis-server.js';
import { startGuildgate } from './lib/guildgate.js';
import { type BenchRequest, describe, sendOne } from './lib/load.js';
import { readyLine, spawnTs } from './lib/processes.js';
import { rssMiB } from './lib/rss.js';

const { values: flags } = parseArgs({
  options: {
    minutes: { type: 'string', default: '10' },
    backend: { type: 'string', default: 'memory' },
    concurrency: { type: 'string', default: '32' },
    rate: { type: 'string', default: '0' },
    keys: { type: 'string', default: '1' },
    'stream-share': { type: 'string', default: '0' },
  },
});
const minutes = Number(flags.minutes);
const concurrency = Number(flags.concurrency);
/** Requests per second to start, whatever the answers do (open loop); 0: closed loop at full speed. */
const rate = Number(flags.rate);
const keyCount = Number(flags.keys);
const streamShare = Number(flags['stream-share']);
if (
  !(minutes > 0) ||
  !Number.isInteger(concurrency) ||
  concurrency < 1 ||
  !(rate >= 0) ||
  !Number.isInteger(keyCount) ||
  keyCount < 1 ||
  !(streamShare >= 0 && streamShare <= 1)
) {
  console.error(
    'usage: npm run bench:soak -- [--minutes 10] [--backend memory|redis] [--concurrency 32] [--rate 0] [--keys 1] [--stream-share 0]',
  );
  process.exit(2);
}
if (flags.backend !== 'memory' && flags.backend !== 'redis') {
  console.error(`--backend must be memory or redis, not ${flags.backend}`);
  process.exit(2);
}
const DURATION_MS = minutes * 60_000;
const REPORT_EVERY_MS = 30_000;
const WARMUP_MS = 5_000;
const LEVEL_OFF_GROWTH = 0.1;

const cleanups: Array<() => Promise<unknown>> = [];
let cleaning: Promise<void> | null = null;
function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    for (const fn of cleanups.reverse()) await fn().catch(() => {});
  })();
  return cleaning;
}
process.once('SIGINT', () => {
  cleanup().finally(() => process.exit(130));
});

const body = (stream: boolean) =>
  JSON.stringify({
    model: 'gpt-4o-mini',
    messages: [{ role: 'user', content: 'Reply with a short greeting for the soak test.' }],
    max_tokens: 32,
    ...(stream ? { stream: true } : {}),
  });
const BODIES = { json: body(false), stream: body(true) };

interface Counters {
  /** Requests started. */
  sent: number;
  done: number;
  /** Milliseconds to the last byte, of the requests done since the last report. */
  latencies: number[];
  /** Fixed rate only: starts skipped because `concurrency` requests were already in flight. */
  skipped: number;
  errors: Map<string, number>;
}

/** The n-th request: keys and streams spread evenly over the run. */
function nth(n: number, apiKeys: string[]): BenchRequest {
  const stream = n % 100 < streamShare * 100;
  return {
    path: '/v1/chat/completions',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${apiKeys[n % apiKeys.length]}` },
    body: stream ? BODIES.stream : BODIES.json,
    stream,
  };
}

async function one(pool: Pool, req: BenchRequest, counters: Counters): Promise<void> {
  try {
    const t = await sendOne(pool, req);
    counters.done++;
    counters.latencies.push(t.total);
  } catch (err) {
    const what = describe(err);
    counters.errors.set(what, (counters.errors.get(what) ?? 0) + 1);
  }
}

/**
 * Until `until` (performance.now() ms) or `abort()`: a closed loop of `concurrency` workers, or with
 * `rate`, that many starts per second on a fixed schedule, at most `concurrency` in flight.
 */
async function drive(pool: Pool, apiKeys: string[], until: number, counters: Counters, abort: () => boolean) {
  if (rate === 0) {
    const worker = async () => {
      while (performance.now() < until && !abort()) await one(pool, nth(counters.sent++, apiKeys), counters);
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
    return;
  }
  const started = performance.now();
  const inFlight = new Set<Promise<void>>();
  let due = 0;
  while (performance.now() < until && !abort()) {
    const shouldHave = Math.floor(((performance.now() - started) * rate) / 1000);
    for (; due < shouldHave; due++) {
      if (inFlight.size >= concurrency) {
        counters.skipped++;
        continue;
      }
      const p = one(pool, nth(counters.sent++, apiKeys), counters).finally(() => inFlight.delete(p));
      inFlight.add(p);
    }
    await sleep(5);
  }
  await Promise.all(inFlight);
}

const mib = (v: number | null) => (v === null ? '-' : `${v.toFixed(1)} MiB`);
const clock = (ms: number) => {
  const s = Math.round(ms / 1000);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
};

async function main(): Promise<number> {
  if (flags.backend === 'redis' && spawnSync('redis-server', ['--version'], { stdio: 'ignore' }).error) {
    console.error('--backend redis needs redis-server on PATH (apt-get install redis-server).');
    return 1;
  }
  const upstream = spawnTs('fake upstream', resolve(import.meta.dirname, 'lib/upstream-process.ts'));
  cleanups.push(() => upstream.stop());
  const { url: upstreamUrl } = await readyLine<{ url: string }>(upstream, 30_000);
  let redisUrl: string | undefined;
  if (flags.backend === 'redis') {
    const redis = await startRedis();
    cleanups.push(() => redis.stop());
    redisUrl = redis.url;
  }
  const gg = await startGuildgate({
    name: `guildgate (${flags.backend} limits)`,
    upstreamUrl,
    redisUrl,
    keys: keyCount,
  });
  cleanups.push(() => gg.stop());
  const pid = gg.child.process.pid;
  const relayGone = () => gg.child.process.exitCode !== null || gg.child.process.signalCode !== null;
  const pool = new Pool(gg.url, { connections: concurrency, headersTimeout: 30_000, bodyTimeout: 30_000 });
  cleanups.push(() => pool.close());

  const load =
    rate > 0 ? `${rate} requests/s (at most ${concurrency} in flight)` : `${concurrency} concurrent requests`;
  console.log(
    `Guildgate soak: ${minutes} min, SQLite + ${flags.backend} limits, ${load} of chat completions ` +
      `(${Math.round(streamShare * 100)} % streamed) over ${keyCount} key(s), fake upstream; relay pid ${pid}.`,
  );
  process.stderr.write(`warm-up ${WARMUP_MS / 1000} s...\n`);
  const counters: Counters = { sent: 0, done: 0, latencies: [], skipped: 0, errors: new Map() };
  await drive(pool, gg.apiKeys, performance.now() + WARMUP_MS, counters, relayGone);
  counters.done = 0;
  counters.skipped = 0;
  counters.latencies = [];

  const rss = { start: rssMiB(pid), mid: null as number | null, end: null as number | null };
  console.log(`RSS after warm-up: ${mib(rss.start)}`);
  const started = performance.now();
  let last = { at: started, done: 0 };
  const intervalRates: number[] = [];
  const report = () => {
    const now = performance.now();
    const rps = ((counters.done - last.done) * 1000) / (now - last.at);
    intervalRates.push(rps);
    const lat = counters.latencies.sort((a, b) => a - b);
    const pct = (q: number) =>
      lat.length ? lat[Math.min(lat.length - 1, Math.floor(q * lat.length))]!.toFixed(1) : '-';
    counters.latencies = [];
    const cols = [
      clock(now - started).padStart(7),
      String(counters.done).padStart(9),
      rps.toFixed(0).padStart(6),
      pct(0.5).padStart(7),
      pct(0.99).padStart(7),
    ];
    console.log(`${cols.join('  ')}  ${mib(rssMiB(pid))}`);
    last = { at: now, done: counters.done };
  };
  console.log(
    `elapsed  ${'requests'.padStart(9)}  ${'req/s'.padStart(6)}  ${'p50 ms'.padStart(7)}  ${'p99 ms'.padStart(7)}  relay RSS (every ${REPORT_EVERY_MS / 1000} s)`,
  );
  const ticker = setInterval(report, REPORT_EVERY_MS);
  const midTimer = setTimeout(() => {
    rss.mid = rssMiB(pid);
  }, DURATION_MS / 2);
  await drive(pool, gg.apiKeys, started + DURATION_MS, counters, relayGone);
  clearInterval(ticker);
  clearTimeout(midTimer);
  rss.end = rssMiB(pid);
  // The last 30 s tick may have landed just before the end; print the tail unless it is negligible.
  if (performance.now() - last.at > 1_000) report();

  console.log('');
  console.log('| when | RSS |');
  console.log('|---|---|');
  console.log(`| start (after warm-up) | ${mib(rss.start)} |`);
  console.log(`| midpoint | ${mib(rss.mid)} |`);
  console.log(`| end | ${mib(rss.end)} |`);
  const growth = rss.mid !== null && rss.end !== null ? (rss.end - rss.mid) / rss.mid : null;
  console.log(`| growth midpoint → end | ${growth === null ? '-' : `${(growth * 100).toFixed(1)} %`} |`);
  console.log('');
  if (growth !== null) console.log(growth < LEVEL_OFF_GROWTH ? 'memory levels off' : 'memory still growing');
  else console.log('RSS not readable (no /proc?): no verdict');
  if (intervalRates.length) {
    const lo = Math.min(...intervalRates);
    const hi = Math.max(...intervalRates);
    console.log(`Throughput per ${REPORT_EVERY_MS / 1000} s interval: ${lo.toFixed(0)} to ${hi.toFixed(0)} req/s.`);
  }
  if (counters.skipped) {
    console.log(`Fixed rate not held: ${counters.skipped} starts skipped with ${concurrency} requests in flight.`);
  }

  // Warm-up failures count too.
  const errors = [...counters.errors.values()].reduce((a, b) => a + b, 0);
  if (relayGone()) console.log(`The relay exited during the soak:\n${gg.child.output()}`);
  if (errors) {
    console.log(`ERRORS: ${errors} failed requests`);
    for (const [what, n] of counters.errors) console.log(`  ${n}× ${what}`);
    return 1;
  }
  console.log(`Errors: none (${counters.done} requests measured).`);
  return relayGone() ? 1 : 0;
}

let code = 1;
try {
  code = await main();
} catch (err) {
  console.error(`soak failed: ${err instanceof Error ? err.message : String(err)}`);
} finally {
  await cleanup();
}
process.exit(code);
