// Prometheus metrics of a real relay: traffic through it (a 200, a stream, a 429 over the requests
// limit, a 401, an upstream 5xx) moves exactly the expected series; /metrics on the main port needs
// its token; the separate listener of a relay process binds where configured; nothing secret or
// personal ever appears in a scrape. Scrapes are parsed as the text exposition format.
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type FakeUpstream, startFakeUpstream } from '../fakes/openai-upstream.js';
import { startTestRelay, type TestRelay } from '../helpers/relay.js';
import { processGroup } from '../helpers/relay-process.js';

const TOKEN = 'metrics-token-for-tests-0123456789abcdef';
const hello = [{ role: 'user' as const, content: 'Say hello to the guild' }];

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

interface Scrape {
  text: string;
  types: Map<string, string>;
  samples: Sample[];
  /** The value of the one sample with exactly these labels (0 when the series does not exist yet). */
  value(name: string, labels?: Record<string, string>): number;
}

const LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)/y;

/** Parses the Prometheus text format (0.0.4): every sample line must parse and belong to a TYPEd family. */
function parseExposition(text: string): Scrape {
  const types = new Map<string, string>();
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('# HELP ')) continue;
    if (line.startsWith('# TYPE ')) {
      const [name, type] = line.slice(7).split(' ');
      types.set(name!, type!);
      continue;
    }
    const m = LINE.exec(line);
    if (!m) throw new Error(`not an exposition line: ${line}`);
    const labels: Record<string, string> = {};
    const body = m[2] ?? '';
    LABEL.lastIndex = 0;
    while (LABEL.lastIndex < body.length) {
      const l = LABEL.exec(body);
      if (!l) throw new Error(`bad labels in: ${line}`);
      labels[l[1]!] = l[2]!.replace(/\\(.)/g, (_s, c: string) => (c === 'n' ? '\n' : c));
    }
    // Prometheus parses values with Go's ParseFloat: Inf and NaN in any case (prom-client writes "Nan").
    const raw = m[3]!.toLowerCase();
    const value = raw === '+inf' ? Infinity : raw === '-inf' ? -Infinity : raw === 'nan' ? Number.NaN : Number(raw);
    if (Number.isNaN(value) && raw !== 'nan') throw new Error(`bad value in: ${line}`);
    const family = m[1]!.replace(/_(bucket|sum|count)$/, '');
    if (!types.has(m[1]!) && types.get(family) !== 'histogram') throw new Error(`sample without a TYPE: ${line}`);
    samples.push({ name: m[1]!, labels, value });
  }
  const same = (a: Record<string, string>, b: Record<string, string>) =>
    Object.keys(a).length === Object.keys(b).length && Object.entries(b).every(([k, v]) => a[k] === v);
  return {
    text,
    types,
    samples,
    value(name, labels = {}) {
      const found = samples.filter((s) => s.name === name && same(s.labels, labels));
      if (found.length > 1) throw new Error(`${found.length} samples of ${name} match`);
      return found[0]?.value ?? 0;
    },
  };
}

async function get(url: string, token?: string): Promise<Response> {
  return fetch(url, { headers: token ? { authorization: `Bearer ${token}` } : {} });
}

describe('metrics on the main port, behind GUILDGATE_METRICS_TOKEN', () => {
  let upstream: FakeUpstream;
  let t: TestRelay;

  const scrape = async (): Promise<Scrape> => {
    const res = await get(`${t.url}/metrics`, TOKEN);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    return parseExposition(await res.text());
  };

  /** Records and settles happen after the answer is sent: wait (bounded) until none is in flight. */
  const settled = async (): Promise<Scrape> => {
    for (let i = 0; i < 100; i++) {
      const s = await scrape();
      if (s.value('guildgate_requests_in_flight') === 0) return s;
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error('requests still in flight');
  };

  beforeAll(async () => {
    upstream = await startFakeUpstream({ name: 'primary' });
    t = await startTestRelay({
      upstreams: { primary: upstream.url },
      tiers: { free: {}, tight: { rpm: 1 } },
      env: { GUILDGATE_METRICS_TOKEN: TOKEN },
      // Records stay queued until flushed by hand, so the queue depth is known exactly.
      config: { usage: { flushIntervalMs: 3_600_000, batchSize: 10_000 } },
    });
  });

  afterAll(async () => {
    await t?.stop();
    await upstream?.close();
  });

  it('refuses a scrape without the token or with a wrong one, in OpenAI shape', async () => {
    for (const token of [undefined, 'not-the-token', `${TOKEN}x`]) {
      const res = await get(`${t.url}/metrics`, token);
      expect(res.status).toBe(401);
      expect(res.headers.get('www-authenticate')).toBe('Bearer');
      const body = (await res.json()) as { error: { code: string; type: string } };
      expect(body.error).toMatchObject({ code: 'invalid_metrics_token', type: 'invalid_request_error' });
    }
    const s = await scrape();
    expect(s.value('guildgate_refusals_total', { reason: 'invalid_metrics_token' })).toBe(3);
    // The token never reaches the logs (the access log has the path only).
    expect(t.logs.join('\n')).not.toContain(TOKEN);
  });

  it('counts a 200, a stream, a 429 over the requests limit, a 401 and an upstream 5xx exactly', async () => {
    const a = await t.issue();
    const b = await t.issue(undefined, 'tight');
    const before = await settled();
    const chat = '/v1/chat/completions';
    const model = 'gpt-4o-mini';

    await t.client(a.key).chat.completions.create({ model, messages: hello });
    const stream = await t.client(a.key).chat.completions.create({ model, messages: hello, stream: true });
    for await (const _chunk of stream) {
      // drain
    }
    await t.client(b.key).chat.completions.create({ model, messages: hello });
    await expect(t.client(b.key).chat.completions.create({ model, messages: hello })).rejects.toMatchObject({
      status: 429,
    });
    await expect(
      t.client('gg_notARealKeyAtAll1234567890abcdefghijkl').chat.completions.create({ model, messages: hello }),
    ).rejects.toMatchObject({ status: 401 });
    upstream.next({ kind: 'error', status: 500 });
    await expect(t.client(a.key).chat.completions.create({ model, messages: hello })).rejects.toMatchObject({
      status: 502,
    });

    const after = await settled();
    const delta = (name: string, labels?: Record<string, string>) =>
      after.value(name, labels) - before.value(name, labels);

    expect(delta('guildgate_requests_total', { route: chat, model, status: '200', outcome: 'ok' })).toBe(3);
    expect(delta('guildgate_requests_total', { route: chat, model, status: '502', outcome: 'upstream_error' })).toBe(1);
    expect(delta('guildgate_http_requests_total', { route: chat, status: '200' })).toBe(3);
    expect(delta('guildgate_http_requests_total', { route: chat, status: '429' })).toBe(1);
    expect(delta('guildgate_http_requests_total', { route: chat, status: '401' })).toBe(1);
    expect(delta('guildgate_http_requests_total', { route: chat, status: '502' })).toBe(1);
    expect(delta('guildgate_refusals_total', { reason: 'rate_limit_requests' })).toBe(1);
    expect(delta('guildgate_refusals_total', { reason: 'invalid_api_key' })).toBe(1);
    // An upstream failure is not a refusal of the relay's own.
    expect(after.samples.filter((s) => s.name === 'guildgate_refusals_total').map((s) => s.labels.reason)).toEqual(
      expect.not.arrayContaining(['upstream_error']),
    );
    expect(delta('guildgate_upstream_latency_seconds_count', { upstream: 'primary' })).toBe(4);
    expect(delta('guildgate_upstream_errors_total', { upstream: 'primary', kind: 'status_5xx' })).toBe(1);
    expect(after.value('guildgate_usage_queue_depth') - before.value('guildgate_usage_queue_depth')).toBe(4);

    // Tokens charged are exactly what the usage records say.
    await t.relay.services.usage.flush();
    expect((await scrape()).value('guildgate_usage_queue_depth')).toBe(0);
    const rows = [
      ...(await t.relay.services.store.listUsage(a.discordId, 100)),
      ...(await t.relay.services.store.listUsage(b.discordId, 100)),
    ];
    expect(rows).toHaveLength(4);
    const charged = rows.reduce((sum, r) => sum + r.chargedTokens, 0);
    expect(charged).toBeGreaterThan(0);
    expect(delta('guildgate_tokens_charged_total', { model })).toBe(charged);

    // Nothing that identifies a key or a member is in the scrape, nor the metrics token.
    const text = (await scrape()).text;
    for (const secret of [a.key, b.key, a.key.slice(0, 9), a.keyId, b.keyId, a.discordId, b.discordId, TOKEN]) {
      expect(text).not.toContain(secret);
    }
  });

  it('counts a stream the upstream breaks off mid-way as an upstream error of kind mid_stream', async () => {
    const a = await t.issue();
    const before = await settled();
    upstream.next({ kind: 'fail-mid-stream', afterChunks: 1 });
    const res = await fetch(`${t.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${a.key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o-mini', messages: hello, stream: true }),
    });
    expect(res.status).toBe(200);
    expect(await res.text()).toContain('upstream_stream_error');
    const after = await settled();
    const kind = { upstream: 'primary', kind: 'mid_stream' };
    expect(
      after.value('guildgate_upstream_errors_total', kind) - before.value('guildgate_upstream_errors_total', kind),
    ).toBe(1);
  });

  it('shows a relayed stream in flight while it runs, and not after the client leaves', async () => {
    const { key } = await t.issue();
    upstream.next({ kind: 'hang-after-first-chunk' });
    const controller = new AbortController();
    const res = await fetch(`${t.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o-mini', messages: hello, stream: true }),
      signal: controller.signal,
    });
    const reader = res.body!.getReader();
    await reader.read(); // the first chunk has been relayed: the stream is open
    const during = await scrape();
    expect(during.value('guildgate_requests_in_flight')).toBe(1);
    expect(during.value('guildgate_streams_in_flight')).toBe(1);
    controller.abort();
    const s = await settled();
    expect(s.value('guildgate_requests_in_flight')).toBe(0);
    expect(s.value('guildgate_streams_in_flight')).toBe(0);
    expect(
      s.value('guildgate_requests_total', {
        route: '/v1/chat/completions',
        model: 'gpt-4o-mini',
        status: '200',
        outcome: 'aborted',
      }),
    ).toBe(1);
  });

  it('has the types Prometheus expects, and event-loop lag from the process metrics', async () => {
    const s = await scrape();
    expect(s.types.get('guildgate_requests_total')).toBe('counter');
    expect(s.types.get('guildgate_upstream_latency_seconds')).toBe('histogram');
    expect(s.types.get('guildgate_streams_in_flight')).toBe('gauge');
    expect(s.types.get('guildgate_usage_queue_depth')).toBe('gauge');
    expect(s.types.get('guildgate_backend_errors_total')).toBe('counter');
    expect(s.types.get('nodejs_eventloop_lag_seconds')).toBe('gauge');
    expect(s.samples.some((x) => x.name === 'process_cpu_user_seconds_total')).toBe(true);
  });
});

describe('the separate metrics listener of a relay process', () => {
  const group = processGroup();
  let root: string;
  let seq = 0;

  const folder = (yaml: string) => {
    const dir = join(root, `p${++seq}`);
    mkdirSync(dir);
    writeFileSync(join(dir, 'guildgate.yaml'), yaml);
    return dir;
  };
  const config = (listen: string) =>
    [
      'server: { host: 127.0.0.1, port: 0 }',
      'dataDir: ./data',
      `metrics: { enabled: true, listen: "${listen}" }`,
      '',
    ].join('\n');

  beforeAll(() => {
    root = mkdtempSync(join(tmpdir(), 'gg-metrics-'));
  });

  afterAll(async () => {
    await group.killAll();
    rmSync(root, { recursive: true, force: true });
  });

  it('binds where configured, serves only /metrics there, and nothing on the main port without a token', async () => {
    const relay = await group.relay(folder(config('127.0.0.1:0')), { LOG_LEVEL: 'info' });
    const line = await relay.waitForLog('metrics listening');
    const url = new URL(String(line.url));
    expect(url.hostname).toBe('127.0.0.1');
    expect(url.pathname).toBe('/metrics');
    expect(Number(url.port)).toBeGreaterThan(0);
    expect(url.port).not.toBe(new URL(relay.url).port);

    const res = await get(url.href);
    expect(res.status).toBe(200);
    const s = parseExposition(await res.text());
    expect(s.types.get('guildgate_http_requests_total')).toBe('counter');
    expect(s.types.get('nodejs_eventloop_lag_seconds')).toBe('gauge');

    expect((await get(`${url.origin}/healthz`)).status).toBe(404);
    expect((await get(`${relay.url}/metrics`)).status).toBe(404);
    // The relay's own traffic is what the listener reports (its own requests are not counted).
    expect((await get(`${relay.url}/healthz`)).status).toBe(200);
    const again = parseExposition(await (await get(url.href)).text());
    expect(again.value('guildgate_http_requests_total', { route: '/healthz', status: '200' })).toBe(1);
    expect(again.value('guildgate_http_requests_total', { route: '/metrics', status: '404' })).toBe(1);
    expect(await relay.stop()).toEqual({ code: 0, signal: null });
  });

  it('with GUILDGATE_METRICS_TOKEN the listener wants it too, and the main port serves it as well', async () => {
    const relay = await group.relay(folder(config('127.0.0.1:0')), {
      LOG_LEVEL: 'info',
      GUILDGATE_METRICS_TOKEN: TOKEN,
    });
    const url = String((await relay.waitForLog('metrics listening')).url);
    expect((await get(url)).status).toBe(401);
    expect((await get(url, 'wrong-token')).status).toBe(401);
    expect((await get(url, TOKEN)).status).toBe(200);
    expect((await get(`${relay.url}/metrics`, TOKEN)).status).toBe(200);
    expect(relay.output()).not.toContain(TOKEN);
    expect(await relay.stop()).toEqual({ code: 0, signal: null });
  });

  it('a port that cannot be bound stops the start, naming metrics.listen', async () => {
    const blocker = createServer();
    blocker.listen(0, '127.0.0.1');
    await once(blocker, 'listening');
    const port = (blocker.address() as { port: number }).port;
    try {
      await expect(group.relay(folder(config(`127.0.0.1:${port}`)), { LOG_LEVEL: 'info' })).rejects.toThrow(
        `metrics.listen: cannot listen on 127.0.0.1:${port} (EADDRINUSE)`,
      );
    } finally {
      blocker.close();
    }
  });

  it('guildgate config check names an invalid metrics field', async () => {
    const r = await group.cli(folder('metrics: { listen: "nowhere" }\n'), {}, ['config', 'check']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('metrics.listen: host:port');
  });
});
