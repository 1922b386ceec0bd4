// `npm run bench`: what Guildgate costs on top of an upstream, next to the floor of any Node relay.
// Every server runs in its own process on loopback; this process only generates load and reports.
// See bench/README.md for the targets and how to read the output.
import { spawnSync } from 'node:child_process';
import { cpus } from 'node:os';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { Pool } from 'undici';
import { startRedis } from '../test/helpers/redis-server.js';
import { cpuTimeMs } from './lib/cpu.js';
import { startGuildgate } from './lib/guildgate.js';
import { addBatch, type BenchRequest, type CellResult, emptyResult, runCell } from './lib/load.js';
import { readyLine, spawnTs } from './lib/processes.js';
import { GOAL, GOAL_TEXT, goalLine, type Row, renderTable, type Summary, summarize } from './lib/report.js';

const { values: flags } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    'cpu-prof': { type: 'string' },
  },
});

const COUNTS = flags.quick
  ? { warmup: 30, nonStream: 200, stream: 100 }
  : { warmup: 300, nonStream: 2_000, stream: 1_000 };
const CONCURRENCY = [1, 16, 64];
const ROUNDS = flags.quick ? 2 : 4;
const MODES = [
  { name: 'non-stream', stream: false, count: COUNTS.nonStream },
  { name: 'stream', stream: true, count: COUNTS.stream },
] as const;
const CHILD_READY_MS = 30_000;

interface Target {
  name: string;
  kind: 'direct' | 'forwarder' | 'guildgate';
  pool: Pool;
  /** The process serving this target, for its CPU time. */
  pid: number | undefined;
  apiKey?: string;
}

const cleanups: Array<() => Promise<unknown>> = [];
let cleaning: Promise<void> | null = null;
/** Stops everything started, newest first. Ctrl-C and the normal end share one run of it. */
function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    for (const fn of cleanups.reverse()) await fn().catch(() => {});
  })();
  return cleaning;
}
let interrupted = false;
process.once('SIGINT', () => {
  interrupted = true;
  cleanup().finally(() => process.exit(130));
});

function log(line: string): void {
  process.stderr.write(`${line}\n`);
}

function chatRequest(target: Target, stream: boolean): BenchRequest {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (target.apiKey) headers.authorization = `Bearer ${target.apiKey}`;
  const body = {
    model: 'gpt-4o-mini',
    messages: [{ role: 'user', content: 'Reply with a short greeting for the benchmark.' }],
    max_tokens: 32,
    ...(stream ? { stream: true } : {}),
  };
  return { path: '/v1/chat/completions', headers, body: JSON.stringify(body), stream };
}

function loadPool(origin: string): Pool {
  // Enough connections for the highest concurrency; timeouts only so a wedged target cannot hang the bench.
  const pool = new Pool(origin, {
    connections: Math.max(...CONCURRENCY),
    headersTimeout: 30_000,
    bodyTimeout: 30_000,
  });
  cleanups.push(() => pool.close());
  return pool;
}

function redisMissing(): boolean {
  const probe = spawnSync('redis-server', ['--version'], { stdio: 'ignore' });
  return (probe.error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT';
}

async function startTargets(): Promise<{ targets: Target[]; notes: string[] }> {
  const notes: string[] = [];
  const upstream = spawnTs('fake upstream', resolve(import.meta.dirname, 'lib/upstream-process.ts'));
  cleanups.push(() => upstream.stop());
  const { url: upstreamUrl } = await readyLine<{ url: string }>(upstream, CHILD_READY_MS);
  const upstreamOrigin = new URL(upstreamUrl).origin;

  const forwarder = spawnTs('bare forwarder', resolve(import.meta.dirname, 'lib/forwarder-process.ts'), {
    args: [upstreamOrigin],
  });
  cleanups.push(() => forwarder.stop());
  const { url: forwarderUrl } = await readyLine<{ url: string }>(forwarder, CHILD_READY_MS);

  const profileDir = flags['cpu-prof'] ? resolve(flags['cpu-prof']) : null;
  const nodeArgs = profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [];
  const targets: Target[] = [
    { name: 'direct', kind: 'direct', pool: loadPool(upstreamOrigin), pid: upstream.process.pid },
    { name: 'forwarder', kind: 'forwarder', pool: loadPool(forwarderUrl), pid: forwarder.process.pid },
  ];

  const memory = await startGuildgate({ name: 'guildgate (memory limits)', upstreamUrl, nodeArgs });
  cleanups.push(() => memory.stop());
  targets.push({
    name: 'guildgate-memory',
    kind: 'guildgate',
    pool: loadPool(memory.url),
    pid: memory.child.process.pid,
    apiKey: memory.apiKey,
  });

  if (redisMissing()) {
    notes.push('guildgate-redis skipped: redis-server is not on PATH (apt-get install redis-server).');
  } else {
    const redis = await startRedis();
    cleanups.push(() => redis.stop());
    const withRedis = await startGuildgate({
      name: 'guildgate (redis limits)',
      upstreamUrl,
      redisUrl: redis.url,
      nodeArgs,
    });
    cleanups.push(() => withRedis.stop());
    targets.push({
      name: 'guildgate-redis',
      kind: 'guildgate',
      pool: loadPool(withRedis.url),
      pid: withRedis.child.process.pid,
      apiKey: withRedis.apiKey,
    });
  }
  if (profileDir) notes.push(`Guildgate CPU profiles (written when the relays exit): ${profileDir}`);
  return { targets, notes };
}

function printHeader(): void {
  const cpu = cpus();
  console.log('Guildgate relay benchmark');
  console.log(
    `node ${process.version}, ${cpu.length} CPU(s) (${cpu[0]?.model ?? 'unknown'})${flags.quick ? ', QUICK run' : ''}`,
  );
  console.log(
    `Requests per cell: ${COUNTS.warmup} warm-up, then ${COUNTS.nonStream} non-stream / ${COUNTS.stream} stream ` +
      `in ${ROUNDS} rounds taking turns between targets; concurrency ${CONCURRENCY.join(', ')}.`,
  );
  console.log(
    'Every server is its own process on 127.0.0.1: fake upstream (answers instantly), bare undici forwarder, ' +
      'Guildgate (SQLite + memory limits; SQLite + Redis limits).',
  );
  console.log('Guildgate runs with LOG_LEVEL=warn (no per-request access log), limits on but never reached.');
  console.log('Latencies in ms; ttfb = first body byte. +p50/+p99 = Guildgate minus direct at the same concurrency.');
  console.log(
    "cpu µs/req = CPU time of the target's own process per request (not the upstream, Redis or load generator).",
  );
  console.log(
    'The load comes from Node on the same cores and saturates before a fast relay does, so throughput shares ' +
      "here understate the relay's cost: quote bench/shared-bench.sh (wrk) for ratios, and cpu µs/req from either.",
  );
  console.log('');
}

/**
 * Warm-up, then `count` requests per target in ROUNDS batches that take turns between targets, so
 * a burst of other activity on the machine hits every target alike instead of one of them.
 */
async function measureCell(
  targets: Target[],
  stream: boolean,
  concurrency: number,
  count: number,
): Promise<Map<Target, { result: CellResult; cpuMs: number | null }>> {
  const cells = new Map(targets.map((t) => [t, { result: emptyResult(), cpuMs: 0 as number | null }]));
  for (const [t, cell] of cells) {
    const warm = await runCell(t.pool, chatRequest(t, stream), concurrency, COUNTS.warmup);
    // Warm-up failures count too: every request must succeed.
    for (const [what, n] of warm.errors) cell.result.errors.set(what, (cell.result.errors.get(what) ?? 0) + n);
  }
  for (let round = 0; round < ROUNDS; round++) {
    const size = Math.floor((count * (round + 1)) / ROUNDS) - Math.floor((count * round) / ROUNDS);
    for (const [t, cell] of cells) {
      const cpuBefore = cpuTimeMs(t.pid);
      addBatch(cell.result, await runCell(t.pool, chatRequest(t, stream), concurrency, size));
      const cpuAfter = cpuTimeMs(t.pid);
      // Ctrl-C closes the pools: the batch under way fails at once; report nothing from it.
      if (interrupted) throw new Error('interrupted');
      cell.cpuMs =
        cell.cpuMs === null || cpuBefore === null || cpuAfter === null ? null : cell.cpuMs + cpuAfter - cpuBefore;
    }
  }
  return cells;
}

async function main(): Promise<number> {
  printHeader();
  const { targets, notes } = await startTargets();
  for (const n of notes) console.log(n);
  if (notes.length) console.log('');

  const allErrors: string[] = [];
  const goalLines: string[] = [];
  for (const mode of MODES) {
    const rows: Row[] = [];
    for (const concurrency of CONCURRENCY) {
      const measured = new Map<string, Summary>();
      for (const [target, m] of await measureCell(targets, mode.stream, concurrency, mode.count)) {
        for (const [what, n] of m.result.errors) {
          allErrors.push(`${mode.name} c=${concurrency} ${target.name}: ${n}× ${what}`);
        }
        const s = summarize(m.result, m.cpuMs);
        measured.set(target.name, s);
        log(`  ${mode.name} c=${concurrency} ${target.name}: ${s.rps.toFixed(0)} req/s`);
      }
      const direct = measured.get('direct')!;
      const forwarder = measured.get('forwarder')!;
      for (const target of targets) {
        const s = measured.get(target.name)!;
        rows.push(
          target.kind === 'guildgate'
            ? { target: target.name, concurrency, s, direct, forwarder }
            : { target: target.name, concurrency, s },
        );
      }
    }
    console.log(`== ${mode.name} chat completions ==`);
    console.log(renderTable(rows, mode.stream));
    console.log('');
    for (const row of rows) {
      if (row.direct && row.concurrency === GOAL.concurrency)
        goalLines.push(`  ${mode.name.padEnd(10)} ${goalLine(row)}`);
    }
  }

  console.log(`Goal: ${GOAL_TEXT}`);
  for (const line of goalLines) console.log(line);
  console.log('');
  if (allErrors.length) {
    console.log(`ERRORS (${allErrors.length} kinds):`);
    for (const e of allErrors) console.log(`  ${e}`);
    return 1;
  }
  console.log('Errors: none (every request answered 200 with a complete body).');
  return 0;
}

let code = 1;
try {
  code = await main();
} catch (err) {
  console.error(`bench failed: ${err instanceof Error ? err.message : String(err)}`);
} finally {
  await cleanup();
}
process.exit(code);
