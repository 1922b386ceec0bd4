// A longer run of mixed hostile traffic (bodies, framings, keys, broken upstream answers) to see
// whether the relay's memory levels off: RSS after a warm-up and at the end, growth bounded.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import fc from 'fast-check';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { FakeBehavior } from '../fakes/openai-upstream.js';
import {
  badAuthorization,
  deepJson,
  httpRequest,
  malformedJson,
  normalRequest,
  rawExchange,
  runs,
  spoiledBody,
  timeoutFor,
} from '../helpers/hostile.js';
import { type Harness, startHarness } from './harness.js';

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h?.stop();
});

const UPSTREAM_FAULTS: FakeBehavior[] = [
  { kind: 'invalid-json' },
  { kind: 'html', status: 502 },
  { kind: 'garbage' },
  { kind: 'truncated-json' },
  { kind: 'usage', raw: '{"prompt_tokens":-1,"completion_tokens":"x"}' },
  { kind: 'reset-after-bytes', bytes: 40 },
  { kind: 'fail-mid-stream', afterChunks: 1 },
  { kind: 'content-type', contentType: 'text/plain' },
];

/** One hostile exchange of a kind chosen by `i`; returns the status (0 when the server closed without one; upstream faults' 5xx as 200). */
async function hostileExchange(i: number, input: { body: string; auth: string; deep: string }): Promise<number> {
  const path = ['/v1/chat/completions', '/v1/completions', '/v1/embeddings'][i % 3]!;
  let bytes: Buffer;
  switch (i % 5) {
    case 0:
      bytes = httpRequest(
        'POST',
        path,
        { Authorization: `Bearer ${h.key}`, 'Content-Type': 'application/json' },
        input.body,
      );
      break;
    case 1:
      bytes = httpRequest('POST', path, { Authorization: input.auth, 'Content-Type': 'application/json' }, '{}');
      break;
    case 2:
      bytes = httpRequest('POST', path, { Authorization: `Bearer ${h.key}` }, input.deep);
      break;
    case 3:
      bytes = Buffer.from(
        `POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /healthz HTTP/1.1\r\n\r\n`,
      );
      break;
    default: {
      h.upstream.next(UPSTREAM_FAULTS[i % UPSTREAM_FAULTS.length]!);
      const stream = i % 2 === 0;
      const res = await fetch(`${h.t.baseURL}/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${h.key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], stream }),
      });
      await res.text().catch(() => undefined);
      // The upstream's fault: a 502/503/504 is the right answer, anything else of the relay's is a 200.
      return [502, 503, 504].includes(res.status) ? 200 : res.status;
    }
  }
  const ex = await rawExchange(h.port, [bytes], { settleMs: 0 });
  return ex.responses[0]?.status ?? 0;
}

// A full collection before each reading, so what is measured is what is kept, not garbage not yet
// collected (the flag can be set at run time; a fresh context then exposes gc()).
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

function memory(): { rss: number; heap: number } {
  gc();
  const m = process.memoryUsage();
  return { rss: m.rss, heap: m.heapUsed };
}

it(
  'RSS levels off under a long run of hostile traffic',
  async () => {
    const total = runs(1_500);
    const inputs = fc.sample(
      fc.record({
        body: fc.oneof(
          spoiledBody('chat').map((b) => JSON.stringify(b)),
          malformedJson('chat'),
        ),
        auth: badAuthorization,
        deep: deepJson,
      }),
      { numRuns: 200, seed: 42 },
    );
    const warmUp = Math.floor(total / 5);
    let afterWarmUp = { rss: 0, heap: 0 };
    for (let i = 0; i < total; i++) {
      if (i === warmUp) afterWarmUp = memory();
      // What the test itself keeps (log lines, the fake's request log) is not the relay's memory.
      if (i % 100 === 0) {
        h.t.logs.length = 0;
        h.upstream.requests.length = 0;
      }
      const status = await hostileExchange(i, inputs[i % inputs.length]!);
      expect(status).toBeLessThan(500);
      if (i % 100 === 0) await normalRequest(h.t, h.key);
    }
    await h.t.relay.services.inflight.settled(Date.now() + 5_000);
    h.t.logs.length = 0;
    h.upstream.requests.length = 0;
    const end = memory();
    const mb = (n: number) => (n / 1024 / 1024).toFixed(1);
    console.log(
      `after warm-up, over ${total - warmUp} hostile exchanges: RSS ${mb(afterWarmUp.rss)} -> ${mb(end.rss)} MB, heap used ${mb(afterWarmUp.heap)} -> ${mb(end.heap)} MB`,
    );
    // Generous: the relay, the fake upstream and the test runner share this process.
    expect((end.rss - afterWarmUp.rss) / 1024 / 1024).toBeLessThan(64);
    // After a full collection the JS heap is back where it was (it stays within a few MB here).
    expect((end.heap - afterWarmUp.heap) / 1024 / 1024).toBeLessThan(32);
    await normalRequest(h.t, h.key);
  },
  timeoutFor(1_500, 30),
);
