// `npm run bench:stall`: the longest event-loop stall one hostile request can cause. The relay runs
// in this process with the loop-delay histogram on; a child process builds and sends the requests.
// See bench/README.md ("Soak and stall").
import { type ChildProcess, fork } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { issueKey } from '../src/app/keys.js';
import { buildConfig } from '../src/config/load.js';
import { createLogger } from '../src/logger.js';
import { type RunningRelay, startRelay } from '../src/server.js';
import { readyLine, spawnTs } from './lib/processes.js';
import { CASES, type KeyName, SMALL } from './lib/stall-cases.js';
import type { SendOrder, SendResult } from './lib/stall-client.js';

/** Loop work triggered by a request may finish after the response is out (settling, usage record). */
const AFTER_RESPONSE_MS = 50;
const generous = { rpm: 1_000_000, maxConcurrent: 100, tokensPerDay: 100_000_000, maxTokens: 256, models: ['*'] };
const TIERS: Record<KeyName, typeof generous> = {
  generous,
  rpm: { ...generous, rpm: 1 },
  budget: { ...generous, tokensPerDay: 1 },
};

const cleanups: Array<() => unknown> = [];
async function cleanup(): Promise<void> {
  for (const fn of cleanups.reverse()) await Promise.resolve(fn()).catch(() => {});
}

async function startInProcessRelay(upstreamUrl: string): Promise<RunningRelay> {
  const dataDir = mkdtempSync(join(tmpdir(), 'gg-stall-'));
  cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
  const raw = {
    server: { port: 0, host: '127.0.0.1', shutdownGraceMs: 2_000 },
    dataDir,
    storage: { store: 'sqlite', limits: 'memory' },
    defaultTier: 'generous',
    tiers: TIERS,
    upstreams: { fake: { baseUrl: upstreamUrl } },
    models: {
      'gpt-4o-mini': { routes: [{ upstream: 'fake', model: 'gpt-4o-mini' }] },
      'text-embedding-3-small': {
        kind: 'embedding',
        routes: [{ upstream: 'fake', model: 'text-embedding-3-small' }],
      },
    },
  };
  // Only LOG_LEVEL from the environment: a REDIS_URL or MONGODB_URI must not change what is measured.
  const config = buildConfig(raw, { LOG_LEVEL: 'warn' }, 'bench:stall');
  const relay = await startRelay(config, { log: createLogger('warn', process.stderr) });
  cleanups.push(() => relay.stop());
  return relay;
}

interface Client {
  child: ChildProcess;
  send(o: Omit<SendOrder, 'seq'>): Promise<SendResult>;
}

function startClient(origin: string, limit: number): Client {
  const child = fork(resolve(import.meta.dirname, 'lib/stall-client.ts'), [origin, String(limit)], {
    execArgv: ['--import', import.meta.resolve('tsx')],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  cleanups.push(() => child.kill());
  const waiting = new Map<number, { resolve(r: SendResult): void; reject(e: Error): void }>();
  child.on('message', (m: SendResult | { ready: true }) => {
    if ('seq' in m) waiting.get(m.seq)?.resolve(m);
  });
  child.once('exit', () => {
    for (const w of waiting.values()) w.reject(new Error('the client process exited'));
  });
  let seq = 0;
  return {
    child,
    send(o) {
      const order = { ...o, seq: ++seq };
      return new Promise((resolve, reject) => {
        waiting.set(order.seq, { resolve, reject });
        child.send(order);
      });
    },
  };
}

const fmt = (v: number) => v.toFixed(1);

async function main(): Promise<number> {
  const upstream = spawnTs('fake upstream', resolve(import.meta.dirname, 'lib/upstream-process.ts'));
  cleanups.push(() => upstream.stop());
  const { url: upstreamUrl } = await readyLine<{ url: string }>(upstream, 30_000);
  const relay = await startInProcessRelay(upstreamUrl);
  const limit = relay.services.config.server.bodyLimitBytes;

  const keys = {} as Record<KeyName, string>;
  for (const [i, tier] of (Object.keys(TIERS) as KeyName[]).entries()) {
    const r = await issueKey(relay.services.keys, { discordId: `10000000000000000${i}`, tier, actor: 'bench' });
    if (!r.ok) throw new Error(r.message);
    keys[tier] = r.key;
  }

  const client = startClient(relay.url, limit);
  const [ready] = (await Promise.race([once(client.child, 'message'), once(client.child, 'exit')])) as unknown[];
  if (!(ready as { ready?: boolean } | null)?.ready) throw new Error('the client process did not start');

  const problems: string[] = [];
  const small = async (key: KeyName, path: string, body: string, expect: number) => {
    const r = await client.send({ path, apiKey: keys[key], body });
    if (r.status !== expect) problems.push(`warm-up ${key} ${path}: HTTP ${r.status}, expected ${expect}: ${r.head}`);
  };
  await small('generous', '/v1/chat/completions', SMALL.chat, 200);
  await small('generous', '/v1/completions', SMALL.completions, 200);
  await small('generous', '/v1/embeddings', SMALL.embeddings, 200);
  await small('budget', '/v1/chat/completions', SMALL.chat, 429);

  const h = monitorEventLoopDelay({ resolution: 1 });
  h.enable();
  const rows: string[][] = [];
  const measure = async (label: string, run: () => Promise<SendResult | null>) => {
    await sleep(AFTER_RESPONSE_MS); // let earlier work drain before the reset
    h.reset();
    const r = await run();
    await sleep(AFTER_RESPONSE_MS);
    rows.push([
      label,
      r ? String(r.status) : '-',
      r ? String(r.bytes) : '-',
      fmt(h.max / 1e6),
      fmt(h.percentile(99) / 1e6),
      r ? fmt(r.wallMs) : '-',
    ]);
    return r;
  };
  await measure('(idle, no request)', async () => {
    await sleep(500);
    return null;
  });
  for (const c of CASES) {
    // The rpm key spends its one request of the minute (and its refusal path is warmed) just before.
    if (c.key === 'rpm') {
      await small('rpm', '/v1/chat/completions', SMALL.chat, 200);
      await small('rpm', '/v1/chat/completions', SMALL.chat, 429);
    }
    process.stderr.write(`case ${c.id}: ${c.label}...\n`);
    const r = await measure(`${c.id}. ${c.label}`, () =>
      client.send({ path: c.path, apiKey: keys[c.key], caseId: c.id }),
    );
    if (r && !c.expect.includes(r.status)) {
      problems.push(`case ${c.id}: HTTP ${r.status}, expected ${c.expect.join(' or ')}: ${r.head}`);
    }
  }
  h.disable();

  console.log(
    `Guildgate event-loop stall per hostile request (relay in-process, SQLite + memory limits; ` +
      `body limit ${limit} bytes; node ${process.version})`,
  );
  console.log('');
  const header = ['case', 'HTTP', 'body bytes', 'loop max ms', 'loop p99 ms', 'wall ms'];
  const widths = header.map((t, i) => Math.max(t.length, ...rows.map((r) => r[i]!.length)));
  const line = (v: string[]) => v.map((s, i) => (i === 0 ? s.padEnd(widths[i]!) : s.padStart(widths[i]!))).join('  ');
  console.log([line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n'));
  console.log('');
  console.log('Loop delay from monitorEventLoopDelay (1 ms resolution: an idle loop reads about 1 ms).');
  if (problems.length) {
    console.log(`UNEXPECTED (${problems.length}):`);
    for (const p of problems) console.log(`  ${p}`);
    return 1;
  }
  console.log('Every response had the expected status.');
  return 0;
}

let code = 1;
try {
  code = await main();
} catch (err) {
  console.error(`stall bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
} finally {
  await cleanup();
}
process.exit(code);
