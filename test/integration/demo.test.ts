// `guildgate demo` as a new user runs it: start it, read the printed key, call it with openai.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { afterAll, expect, it } from 'vitest';
import { freePort } from '../helpers/redis-server.js';

let child: ChildProcess | undefined;
const dir = mkdtempSync(join(tmpdir(), 'gg-demo-'));

afterAll(async () => {
  if (child && child.exitCode === null) {
    const exited = new Promise((r) => child!.once('exit', r));
    child.kill('SIGTERM');
    await exited;
  }
  rmSync(dir, { recursive: true, force: true });
});

it('prints a working key and a curl line, then serves the demo models', async () => {
  const port = await freePort();
  child = spawn(
    process.execPath,
    ['bin/guildgate.mjs', 'demo', '--port', String(port), '--data-dir', join(dir, 'data')],
    {
      cwd: process.cwd(),
      env: { ...process.env, LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let out = '';
  child.stdout!.on('data', (d) => {
    out += d;
  });
  child.stderr!.on('data', (d) => {
    out += d;
  });
  const deadline = Date.now() + 30_000;
  while (!/Press Ctrl\+C/.test(out) && Date.now() < deadline && child.exitCode === null) {
    await new Promise((r) => setTimeout(r, 100));
  }
  expect(out).toContain('Press Ctrl+C');
  const key = /API key \(shown once\): (gg_\S+)/.exec(out)?.[1];
  expect(key).toBeDefined();
  expect(out).toContain(`curl http://127.0.0.1:${port}/v1/chat/completions`);

  const client = new OpenAI({ apiKey: key!, baseURL: `http://127.0.0.1:${port}/v1`, maxRetries: 0 });
  const res = await client.chat.completions.create({
    model: 'demo-chat',
    messages: [{ role: 'user', content: 'Hello there' }],
  });
  expect(res.choices[0]?.message.content).toContain('demo upstream');
  let streamed = '';
  for await (const c of await client.chat.completions.create({
    model: 'demo-chat',
    messages: [{ role: 'user', content: 'Hello' }],
    stream: true,
  })) {
    streamed += c.choices[0]?.delta.content ?? '';
  }
  expect(streamed).toBe("This is Guildgate's demo upstream, not a real model. You said 1 word.");
  const models = (await client.models.list()).data.map((m) => m.id).sort();
  expect(models).toEqual(['demo-chat', 'demo-embed']);

  const exited = new Promise<number | null>((r) => child!.once('exit', (code) => r(code)));
  child.kill('SIGINT');
  expect(await exited).toBe(0);
});
