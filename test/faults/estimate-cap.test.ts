// When the relay estimates a completion (no usage from the provider, or a stream the client left),
// the delivered text may be counted as UTF-8 bytes once the request's tokenizing allowance is spent.
// The charge must still stay within the reservation: completion tokens <= the cap sent upstream.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { type FakeUpstream, startFakeUpstream } from '../fakes/openai-upstream.js';
import { startTestRelay, type TestRelay } from '../helpers/relay.js';
import { readUsage } from './invariants.js';

let upstream: FakeUpstream;
let t: TestRelay;
let dataDir: string;

beforeAll(async () => {
  upstream = await startFakeUpstream({ name: 'fake' });
  dataDir = mkdtempSync(join(tmpdir(), 'gg-fault-cap-'));
  t = await startTestRelay({
    dataDir,
    upstreams: { fake: upstream.url },
    tiers: { free: { tokensPerDay: 10_000_000 } },
  });
});

afterAll(async () => {
  await t?.stop();
  await upstream?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

it('never charges more completion tokens than the max_tokens it sent upstream', async () => {
  const { key, discordId } = await t.issue();
  // The provider answers "hello from" (max_tokens 2) and reports no usage: the relay must estimate.
  upstream.next({ kind: 'ok', usage: false });
  // ~150 KB of words: tokenizing it takes longer than the 2 ms allowance, so the rest is bytes.
  const prompt = Array.from({ length: 25_000 }, (_, i) => `word${i % 97}`).join(' ');
  const res = await t.client(key).chat.completions.create({
    model: 'gpt-4o-mini',
    messages: [{ role: 'user', content: prompt }],
    max_tokens: 2,
  });
  expect(res.choices[0]?.message.content).toBe('hello from');
  await t.relay.services.usage.flush();
  const [record] = (await readUsage(join(dataDir, 'guildgate.db'), [discordId])).get(discordId)!.records;
  // Observed: completionTokens 10 (the bytes of "hello from"), estimated: true.
  expect(record).toMatchObject({ estimated: true });
  expect(record!.completionTokens).toBeLessThanOrEqual(2);
});
