// Turns raw timings into the printed tables: throughput and latency percentiles per target, and
// for Guildgate what it adds over calling the upstream directly and how close it gets to the
// bare forwarder.
import type { CellResult } from './load.js';

export interface Summary {
  rps: number;
  p50: number;
  p99: number;
  firstByteP50: number | null;
  firstByteP99: number | null;
  /** CPU time of the target's own process per request, in microseconds (null where unknown). */
  cpuUsPerRequest: number | null;
  errors: number;
}

/** Nearest-rank percentile of unsorted samples (NaN when there are none). */
export function percentile(samples: number[], p: number): number {
  if (samples.length === 0) return Number.NaN;
  const sorted = Float64Array.from(samples).sort();
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]!;
}

/** `cpuMs`: CPU time the target process used during the measured requests. */
export function summarize(r: CellResult, cpuMs: number | null = null): Summary {
  let errors = 0;
  for (const n of r.errors.values()) errors += n;
  const hasFirstByte = r.firstByte.length > 0;
  return {
    rps: r.elapsedMs > 0 ? (r.ok * 1000) / r.elapsedMs : 0,
    p50: percentile(r.total, 0.5),
    p99: percentile(r.total, 0.99),
    firstByteP50: hasFirstByte ? percentile(r.firstByte, 0.5) : null,
    firstByteP99: hasFirstByte ? percentile(r.firstByte, 0.99) : null,
    cpuUsPerRequest: cpuMs !== null && r.ok > 0 ? (cpuMs * 1000) / r.ok : null,
    errors,
  };
}

const ms = (v: number | null) => (v === null || Number.isNaN(v) ? '-' : v.toFixed(2));
const signedMs = (v: number) => (Number.isNaN(v) ? '-' : `${v >= 0 ? '+' : ''}${v.toFixed(2)}`);

/** One measured cell, with its baselines when the target is a Guildgate variant. */
export interface Row {
  target: string;
  concurrency: number;
  s: Summary;
  direct?: Summary;
  forwarder?: Summary;
}

export function renderTable(rows: Row[], stream: boolean): string {
  const header = [
    'target',
    'conc',
    'req/s',
    ...(stream ? ['ttfb p50', 'ttfb p99'] : []),
    'p50 ms',
    'p99 ms',
    '+p50 vs direct',
    '+p99 vs direct',
    '% of fwd req/s',
    'cpu µs/req',
    'errors',
  ];
  const cells = rows.map((r) => [
    r.target,
    String(r.concurrency),
    r.s.rps.toFixed(0),
    ...(stream ? [ms(r.s.firstByteP50), ms(r.s.firstByteP99)] : []),
    ms(r.s.p50),
    ms(r.s.p99),
    r.direct ? signedMs(r.s.p50 - r.direct.p50) : '',
    r.direct ? signedMs(r.s.p99 - r.direct.p99) : '',
    r.forwarder ? `${((100 * r.s.rps) / r.forwarder.rps).toFixed(0)}%` : '',
    r.s.cpuUsPerRequest === null ? '-' : r.s.cpuUsPerRequest.toFixed(0),
    String(r.s.errors),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  // The target name reads left-aligned; numbers line up on the right.
  const line = (vals: string[]) =>
    vals.map((v, i) => (i === 0 ? v.padEnd(widths[i]!) : v.padStart(widths[i]!))).join('  ');
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...cells.map(line)].join('\n');
}

export const GOAL = {
  concurrency: 16,
  addedP50Ms: 1,
  addedP99Ms: 5,
  minShareOfForwarder: 0.6,
} as const;

export const GOAL_TEXT =
  `added latency p50 ≤ ${GOAL.addedP50Ms} ms and p99 ≤ ${GOAL.addedP99Ms} ms at concurrency ${GOAL.concurrency}, ` +
  `throughput ≥ ${GOAL.minShareOfForwarder * 100}% of the bare forwarder`;

/** One line per Guildgate row at the goal's concurrency: the three measures and PASS or MISS. */
export function goalLine(r: Row): string {
  if (!r.direct || !r.forwarder) throw new Error(`no baselines for ${r.target}`);
  const addedP50 = r.s.p50 - r.direct.p50;
  const addedP99 = r.s.p99 - r.direct.p99;
  const share = r.s.rps / r.forwarder.rps;
  const okP50 = addedP50 <= GOAL.addedP50Ms;
  const okP99 = addedP99 <= GOAL.addedP99Ms;
  const okShare = share >= GOAL.minShareOfForwarder;
  const mark = (ok: boolean) => (ok ? 'ok' : 'MISS');
  return (
    `${r.target}: ${okP50 && okP99 && okShare ? 'PASS' : 'MISS'}  ` +
    `(+p50 ${signedMs(addedP50)} ms ${mark(okP50)}, +p99 ${signedMs(addedP99)} ms ${mark(okP99)}, ` +
    `${(share * 100).toFixed(1)}% of forwarder ${mark(okShare)})`
  );
}
