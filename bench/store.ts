// `npm run bench:store -- --file PATH`: what the store's slow jobs cost the event loop, on a store
// built by bench/seed-store.ts. Prints numbers, asserts nothing. The purge deletes the expired rows,
// so the file is changed: run it on a copy. See README.md ("Store maintenance").
import { statSync } from 'node:fs';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { SqliteStore } from '../src/adapters/sqlite/sqlite-store.js';
import { purgeExpiredUsage } from '../src/app/retention.js';
import { newId } from '../src/domain/ids.js';
import type { UsageRecord } from '../src/domain/types.js';

const { values } = parseArgs({
  options: {
    file: { type: 'string' },
    'retention-days': { type: 'string', default: '90' },
    /** Users in the seeded store (bench:seed --keys): flush records are spread over all of them. */
    users: { type: 'string', default: '1000000' },
    repeats: { type: 'string', default: '15' },
    /** Run without the checkpoint worker (SQLite checkpoints on commit, as before it existed). */
    'no-worker': { type: 'boolean', default: false },
    /** Rows per purge statement, instead of the store's default. */
    'purge-batch': { type: 'string' },
    /** Skip the flushes written on the event loop (the comparison run before the writer thread's). */
    'no-sync-flushes': { type: 'boolean', default: false },
  },
});
if (values.file === undefined) throw new Error('--file PATH is required (a store from npm run bench:seed)');
const file = values.file;
const users = Number(values.users);
const repeats = Number(values.repeats);
const now = new Date();
const today = now.toISOString().slice(0, 10);
const utcDay = (r: UsageRecord) => r.createdAt.toISOString().slice(0, 10);
const snowflake = (i: number): string => String(300_000_000_000_000_000n + BigInt(i) * 7_919n);

const walBytes = (): number => {
  try {
    return statSync(`${file}-wal`).size;
  } catch {
    return 0;
  }
};
const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MB`;

const histogram = monitorEventLoopDelay({ resolution: 1 });
/**
 * Wall time of `work`, the longest the event loop was stuck while it ran, and how long the loop was
 * busy in all (event-loop utilization's active time: unlike the delay, it excludes waiting for a CPU
 * on a loaded machine).
 */
async function measure<T>(
  work: () => Promise<T>,
): Promise<{ ms: number; stallMs: number; p99StallMs: number; busyMs: number; value: T }> {
  histogram.reset();
  histogram.enable();
  await sleep(5);
  const elu = performance.eventLoopUtilization();
  const t0 = performance.now();
  const value = await work();
  const ms = performance.now() - t0;
  // The delay of a synchronous stretch is recorded when the loop turns again.
  await sleep(5);
  const busyMs = performance.eventLoopUtilization(elu).active;
  histogram.disable();
  return { ms, stallMs: histogram.max / 1e6, p99StallMs: histogram.percentile(99) / 1e6, busyMs, value };
}

const fmt = (n: number) => n.toFixed(1);
const percentile = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.ceil((p / 100) * xs.length) - 1]!;

function flushBatch(): UsageRecord[] {
  return Array.from({ length: 500 }, () => {
    const prompt = 20 + Math.floor(Math.random() * 2_000);
    return {
      requestId: newId('req'),
      keyId: newId('key'),
      discordId: snowflake(Math.floor(Math.random() * users)),
      model: 'gpt-4o-mini',
      upstream: 'openai',
      endpoint: 'chat.completions',
      promptTokens: prompt,
      completionTokens: 100,
      chargedTokens: prompt + 100,
      estimated: false,
      status: 'ok',
      httpStatus: 200,
      latencyMs: 500,
      stream: false,
      createdAt: new Date(),
    } satisfies UsageRecord;
  });
}

console.log(`store ${file}: ${mb(statSync(file).size)}, WAL ${mb(walBytes())}`);
const storeOptions = {
  ...(values['no-worker'] ? { checkpoints: false as const } : {}),
  ...(values['purge-batch'] ? { purgeBatchRows: Number(values['purge-batch']) } : {}),
};

/**
 * Flushes of 500 records, each for a random user among all of them: the recorder's worst case, a
 * page of usage_requests_by_user and of usage_daily per record.
 */
async function flushes(label: string, store: SqliteStore): Promise<void> {
  const times: number[] = [];
  const stalls: number[] = [];
  const busy: number[] = [];
  for (let i = 0; i < repeats; i++) {
    const batch = flushBatch();
    const r = await measure(() => store.insertUsage(batch, utcDay));
    times.push(r.ms);
    stalls.push(r.stallMs);
    busy.push(r.busyMs);
    // Requests arrive between flushes; give the checkpointer its usual room.
    await sleep(300);
  }
  console.log(
    `flush of 500 records over ${users} users, ${label}, ${repeats} runs: time p50 ${fmt(percentile(times, 50))} ms, ` +
      `max ${fmt(Math.max(...times))} ms; loop stall p50 ${fmt(percentile(stalls, 50))} ms, max ${fmt(Math.max(...stalls))} ms; ` +
      `loop busy p50 ${fmt(percentile(busy, 50))} ms, max ${fmt(Math.max(...busy))} ms`,
  );
}

// Before the writer thread: the same flushes written by the relay's connection, on the event loop.
if (!values['no-sync-flushes']) {
  const onLoop = SqliteStore.open(file, { ...storeOptions, writer: false });
  await flushes('written on the event loop (writer: false)', onLoop);
  await onLoop.close();
}

const store = SqliteStore.open(file, storeOptions);

// usage today: the old way (every aggregate of the day into memory, summed there) and the query.
{
  const inMemory = await measure(async () => {
    const rows = await store.dailyUsage({ fromDay: today, toDay: today });
    const byModel = new Map<string, number>();
    for (const r of rows) byModel.set(r.model, (byModel.get(r.model) ?? 0) + r.chargedTokens);
    return rows.length;
  });
  console.log(
    `usage today (${today}), rows of the day summed in memory: ${fmt(inMemory.ms)} ms (${inMemory.value} aggregates)`,
  );
  if ('modelTotals' in store) {
    const inDb = await measure(() => store.modelTotals(today));
    console.log(`usage today, summed by the database: ${fmt(inDb.ms)} ms (${inDb.value.length} models)`);
  }
}

await flushes('on the usage writer thread', store);

// The retention purge, with the WAL file sampled while it runs.
{
  const walBefore = walBytes();
  let walPeak = walBefore;
  const sampler = setInterval(() => {
    walPeak = Math.max(walPeak, walBytes());
  }, 20);
  const r = await measure(() => purgeExpiredUsage(store, Number(values['retention-days']), now));
  clearInterval(sampler);
  walPeak = Math.max(walPeak, walBytes());
  console.log(
    `purge: ${r.value} rows in ${fmt(r.ms)} ms, loop delay max ${fmt(r.stallMs)} ms, p99 ${fmt(r.p99StallMs)} ms; ` +
      `WAL ${mb(walBefore)} before, ${mb(walPeak)} peak, ${mb(walBytes())} right after`,
  );
  await sleep(2_000);
  console.log(`WAL 2 s after the purge: ${mb(walBytes())}`);
}

await store.close();
console.log(`WAL after close: ${mb(walBytes())}`);
