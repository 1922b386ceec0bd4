// Runs every kind of request with a marker in the prompt, then scans every log line and every byte
// the store wrote for the marker and for raw keys. Neither may appear anywhere.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { revokeKey, rotateKey } from '../../src/app/keys.js';
import { type FakeUpstream, startFakeUpstream } from '../fakes/openai-upstream.js';
import { startTestRelay, type TestRelay } from '../helpers/relay.js';

const MARKER = `PROMPT-MARKER-${Math.random().toString(36).slice(2)}`;
const REPLY_MARKER = `REPLY-MARKER-${Math.random().toString(36).slice(2)}`;
let upstream: FakeUpstream;
let t: TestRelay;
const rawKeys: string[] = [];

beforeAll(async () => {
  upstream = await startFakeUpstream({ name: 'up' });
  t = await startTestRelay({ upstreams: { up: upstream.url }, config: { limits: { authFailuresPerMinute: 1000 } } });
});
afterAll(async () => {
  await t?.stop();
  await upstream?.close();
});

it('never logs or stores prompt text, completion text or raw keys', async () => {
  const a = await t.issue();
  const b = await t.issue();
  rawKeys.push(a.key, b.key);
  const messages = [{ role: 'user' as const, content: `Tell me about ${MARKER}` }];
  const c = t.client(a.key);
  upstream.setDefault({ kind: 'ok', text: `sure ${REPLY_MARKER}` });

  await c.chat.completions.create({ model: 'gpt-4o-mini', messages });
  for await (const _ of await c.chat.completions.create({ model: 'gpt-4o-mini', messages, stream: true }));
  await c.completions.create({ model: 'gpt-4o-mini', prompt: MARKER });
  await c.embeddings.create({ model: 'text-embedding-3-small', input: MARKER });
  // Error paths: upstream errors quoting the prompt, invalid bodies, bad keys.
  upstream.next({ kind: 'error', status: 400, message: `bad request about ${MARKER}` });
  await c.chat.completions.create({ model: 'gpt-4o-mini', messages }).catch(() => {});
  upstream.next({ kind: 'error', status: 500, message: `crash on ${MARKER}` });
  await c.chat.completions.create({ model: 'gpt-4o-mini', messages }).catch(() => {});
  upstream.next({ kind: 'fail-mid-stream', afterChunks: 1 });
  await (async () => {
    for await (const _ of await c.chat.completions.create({ model: 'gpt-4o-mini', messages, stream: true }));
  })().catch(() => {});
  await fetch(`${t.baseURL}/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${a.key}`, 'content-type': 'application/json' },
    body: `{"model": "gpt-4o-mini", "messages": "${MARKER}"`,
  });
  await fetch(`${t.baseURL}/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${a.key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: MARKER, messages }),
  });
  await t
    .client(`${a.key}x`)
    .chat.completions.create({ model: 'gpt-4o-mini', messages })
    .catch(() => {});
  // Key lifecycle writes audit entries.
  const rotated = await rotateKey(t.relay.services.keys, { keyId: b.keyId, actor: 'test' });
  if (rotated.ok) {
    rawKeys.push(rotated.key);
    await revokeKey(t.relay.services.keys, { keyId: rotated.record.id, actor: 'test', reason: 'done' });
  }
  await t.relay.stop();

  expect(t.logs.length).toBeGreaterThan(10);
  const needles = [MARKER, REPLY_MARKER, ...rawKeys];
  for (const line of t.logs) {
    for (const n of needles) expect(line).not.toContain(n);
  }

  // Every row of every table, and the raw bytes of the database files (WAL included).
  const files = readdirSync(t.dataDir).filter((f) => f.startsWith('guildgate.db'));
  expect(files).toContain('guildgate.db');
  const db = new Database(join(t.dataDir, 'guildgate.db'), { readonly: true });
  const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as Array<{ name: string }>;
  let rows = 0;
  for (const { name } of tables) {
    for (const row of db.prepare(`SELECT * FROM "${name}"`).all()) {
      rows++;
      const text = JSON.stringify(row);
      for (const n of needles) expect(text).not.toContain(n);
    }
  }
  db.close();
  expect(rows).toBeGreaterThan(10);
  for (const f of files) {
    const bytes = readFileSync(join(t.dataDir, f)).toString('latin1');
    for (const n of needles) expect(bytes.includes(n)).toBe(false);
  }
});
