// An upstream answering bytes that are not HTTP: undici's parser error may carry no code, and the
// client must still get an OpenAI-shaped 502 (recorded as such), never a 500 of the relay's own.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { type ChaosProxy, startChaosProxy } from '../fakes/chaos-proxy.js';
import { type FakeUpstream, startFakeUpstream } from '../fakes/openai-upstream.js';
import { startTestRelay, type TestRelay } from '../helpers/relay.js';

let upstream: FakeUpstream;
let proxy: ChaosProxy;
let t: TestRelay;
let dataDir: string;

beforeAll(async () => {
  upstream = await startFakeUpstream({ name: 'fake' });
  proxy = await startChaosProxy({ port: Number(new URL(upstream.url).port) });
  dataDir = mkdtempSync(join(tmpdir(), 'gg-fault-garbage-'));
  t = await startTestRelay({ dataDir, upstreams: { chaos: `${proxy.url}/v1` } });
});

afterAll(async () => {
  await t?.stop();
  await proxy?.close();
  await upstream?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

for (const [name, bytes] of [
  ['not HTTP at all', Buffer.from('\x00\x01 garbage\r\n\r\n')],
  ['a bad header line', Buffer.from('HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nbad header\r\n\r\n{}')],
] as const) {
  it(`answers 502 when the upstream's response head is ${name}`, async () => {
    const { key } = await t.issue();
    proxy.next({ kind: 'garbage', bytes });
    const res = await fetch(`${t.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }),
    });
    const body = (await res.json()) as { error?: { code?: string } };
    // Observed: 500 { code: 'internal_error' } and an 'unhandled error' log line.
    expect({ status: res.status, code: body.error?.code }).toEqual({ status: 502, code: 'upstream_unavailable' });
    expect(t.logs.filter((l) => l.includes('unhandled error'))).toEqual([]);
  });
}
