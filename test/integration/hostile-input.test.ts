// Client input that once answered 500: a path with malformed percent-encoding, and JSON nested far
// deeper than any request needs. Both are the client's fault: OpenAI-shaped 400s, and the relay
// keeps serving normal requests in between.
import fc from 'fast-check';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { MAX_JSON_DEPTH, nestsDeeperThan } from '../../src/relay/api/body.js';
import { type FakeUpstream, startFakeUpstream } from '../fakes/openai-upstream.js';
import { startTestRelay, type TestRelay } from '../helpers/relay.js';

let upstream: FakeUpstream;
let t: TestRelay;
let key: string;

beforeAll(async () => {
  upstream = await startFakeUpstream({ name: 'up' });
  t = await startTestRelay({ upstreams: { up: upstream.url } });
  ({ key } = await t.issue());
});
afterAll(async () => {
  await t?.stop();
  await upstream?.close();
});

const headers = () => ({ authorization: `Bearer ${key}`, 'content-type': 'application/json' });
const nested = (depth: number) => `${'['.repeat(depth)}${']'.repeat(depth)}`;

it('a path with malformed percent-encoding gets a 400 in OpenAI shape', async () => {
  const res = await fetch(`${t.baseURL}/models/%ZZ`, { headers: headers() });
  expect(res.status).toBe(400);
  expect(await res.json()).toMatchObject({ error: { type: 'invalid_request_error', code: 'invalid_url' } });
});

it('JSON nested 100,000 levels deep, in content or in an unknown field, gets 400s, again and again', async () => {
  const deepContent = `{"model":"gpt-4o-mini","messages":[{"role":"user","content":${nested(100_000)}}]}`;
  const deepField = `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"extra":${nested(100_000)}}`;
  for (let i = 0; i < 50; i++) {
    const res = await fetch(`${t.baseURL}/chat/completions`, {
      method: 'POST',
      headers: headers(),
      body: i % 2 ? deepField : deepContent,
    });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ error: { type: 'invalid_request_error', code: 'invalid_json' } });
  }
  const ok = await t.client(key).chat.completions.create({
    model: 'gpt-4o-mini',
    messages: [{ role: 'user', content: 'still here?' }],
  });
  expect(ok.choices.length).toBeGreaterThan(0);
  expect(upstream.requests).toHaveLength(1);
});

it('measures nesting outside strings only, up to the limit', () => {
  expect(nestsDeeperThan(nested(MAX_JSON_DEPTH), MAX_JSON_DEPTH)).toBe(false);
  expect(nestsDeeperThan(nested(MAX_JSON_DEPTH + 1), MAX_JSON_DEPTH)).toBe(true);
  // Brackets and escaped quotes inside strings do not count.
  expect(nestsDeeperThan(JSON.stringify({ s: `\\"${'['.repeat(500)}` }), MAX_JSON_DEPTH)).toBe(false);
  const tools = { tools: [{ type: 'function', function: { parameters: { type: 'object', properties: {} } } }] };
  expect(nestsDeeperThan(JSON.stringify(tools), MAX_JSON_DEPTH)).toBe(false);
});

it('agrees with the depth of the parsed value, whatever the strings hold', () => {
  const depth = (v: unknown): number =>
    v !== null && typeof v === 'object' ? 1 + Math.max(0, ...Object.values(v).map(depth)) : 0;
  // Strings full of quotes, backslashes and brackets: the characters the scan must skip correctly.
  const tricky = fc.string({ unit: fc.constantFrom('"', '\\', '[', ']', '{', '}', 'a', ' ', '\u00e9') });
  const value = fc.letrec((tie) => ({
    node: fc.oneof(
      { depthSize: 'small' },
      tricky,
      fc.integer(),
      fc.array(tie('node'), { maxLength: 3 }),
      fc.dictionary(tricky, tie('node'), { maxKeys: 3 }),
    ),
  })).node;
  fc.assert(
    fc.property(value, fc.integer({ min: 0, max: 8 }), (v, max) => {
      const text = JSON.stringify(v);
      expect(nestsDeeperThan(text, max)).toBe(depth(v) > max);
    }),
    { numRuns: 500 },
  );
});
