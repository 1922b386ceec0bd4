// Another process (the CLI, a second replica on the same file, a backup) holds the SQLite write lock
// for 3 s. SQLite's busy timeout sleeps on the thread that waits, so the relay waits where its event
// loop is not: usage batches on the writer thread, interactive writes between short attempts. Once
// stalled for the whole lock (5.1 s seen in the store outage test). Expected: the event loop is
// never held up for a second (generous), requests are answered meanwhile, a key issued during the
// lock is stored once it is released, and the usage record is written exactly once.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { type FakeUpstream, startFakeUpstream } from '../fakes/openai-upstream.js';
import { startTestRelay, type TestRelay } from '../helpers/relay.js';
import { readUsage } from './invariants.js';
import { lockStore } from './store-lock.js';

let upstream: FakeUpstream;
let t: TestRelay;
let dataDir: string;

beforeAll(async () => {
  upstream = await startFakeUpstream({ name: 'fake' });
  dataDir = mkdtempSync(join(tmpdir(), 'gg-fault-stall-'));
  t = await startTestRelay({ dataDir, upstreams: { fake: upstream.url } });
});

afterAll(async () => {
  await t?.stop();
  await upstream?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

it('keeps the event loop running while another process holds the store write lock', async () => {
  const file = join(dataDir, 'guildgate.db');
  const { key, discordId } = await t.issue();
  const client = t.client(key);
  const { released } = await lockStore(file, 3_000);
  let lockHeld = true;
  void released.then(() => {
    lockHeld = false;
  });
  const delay = monitorEventLoopDelay({ resolution: 10 });
  delay.enable();
  // A write on the relay's own connection: it waits for the lock without holding up the loop.
  const issuing = t.issue();
  // One request gives the recorder a record to write (every 50 ms) while the lock is held.
  const answer = await client.chat.completions.create({
    model: 'gpt-4o-mini',
    messages: [{ role: 'user', content: 'hi' }],
  });
  expect(answer.choices[0]?.message.content).toBe('hello from fake');
  const health = await fetch(new URL('/readyz', t.url));
  expect(health.status).toBe(200);
  // Answered while the file was still locked, not after it.
  expect(lockHeld).toBe(true);
  await sleep(200);
  expect(await released).toBe(0);
  const issued = await issuing;
  delay.disable();
  expect(Math.round(delay.max / 1e6)).toBeLessThan(1_000);

  await t.relay.services.usage.flush();
  const usage = await readUsage(file, [discordId, issued.discordId]);
  expect(usage.get(discordId)!.records).toHaveLength(1);
  expect(usage.get(discordId)!.daily.requests).toBe(1);
  expect(await t.relay.services.store.getKeyById(issued.keyId)).toMatchObject({ status: 'active' });
});
