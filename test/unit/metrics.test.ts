// Metrics in isolation: labels stay bounded (unknown models, upstreams, paths and codes become
// "other"), cells drain into prom-client exactly, the token check, the config section, and the
// counting hooks of InFlight and the limiter failure policy. Values are read back through
// prom-client's own registry (structured), not by matching text.
import { Histogram, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { MemoryConcurrencyLimiter, MemoryRateLimiter, MemoryTokenBudget } from '../../src/adapters/memory/limits.js';
import { withFailurePolicy } from '../../src/adapters/resilient-limits.js';
import { InFlight } from '../../src/app/in-flight.js';
import { buildConfig, ConfigError, configWarnings } from '../../src/config/load.js';
import { tokenCheck } from '../../src/observability/endpoint.js';
import { PromMetrics } from '../../src/observability/metrics.js';

type Labels = Record<string, string | number>;

function metrics() {
  return new PromMetrics({ models: ['gpt-4o-mini'], upstreams: ['primary'], processMetrics: false });
}

/** Every sample of one metric as { labels, value }, from the registry's JSON. */
async function samples(m: PromMetrics, name: string): Promise<Array<{ labels: Labels; value: number }>> {
  const all = await m.registry.getMetricsAsJSON();
  const metric = all.find((x) => x.name === name);
  if (!metric) throw new Error(`no metric ${name}`);
  return metric.values.map((v) => ({ labels: v.labels as Labels, value: v.value }));
}

const record = (model: string, chargedTokens = 10) =>
  ({ endpoint: 'chat.completions', model, httpStatus: 200, status: 'ok', chargedTokens }) as const;

describe('label bounding', () => {
  it('an unknown model is counted as "other"; configured ones by name', async () => {
    const m = metrics();
    m.relayed(record('gpt-4o-mini', 7));
    m.relayed(record('gpt-4o-mini', 5));
    m.relayed(record('made-up-model', 3));
    m.relayed(record('another-made-up', 1));
    expect(await samples(m, 'guildgate_requests_total')).toEqual([
      {
        labels: { route: '/v1/chat/completions', model: 'gpt-4o-mini', status: '200', outcome: 'ok' },
        value: 2,
      },
      { labels: { route: '/v1/chat/completions', model: 'other', status: '200', outcome: 'ok' }, value: 2 },
    ]);
    expect(await samples(m, 'guildgate_tokens_charged_total')).toEqual([
      { labels: { model: 'gpt-4o-mini' }, value: 12 },
      { labels: { model: 'other' }, value: 4 },
    ]);
  });

  it('paths map to a fixed set of routes, whatever the client sends', async () => {
    const m = metrics();
    m.response('/v1/chat/completions', 200);
    m.response('/v1/models/org/some-model', 200);
    m.response('/v1/models/gg_secretlookingthing', 404);
    m.response('/v1/anything-else', 404);
    m.response('/wp-login.php', 404);
    m.response('/dashboard', 200);
    const got = (await samples(m, 'guildgate_http_requests_total')).map((s) => [
      s.labels.route,
      s.labels.status,
      s.value,
    ]);
    expect(got).toEqual(
      expect.arrayContaining([
        ['/v1/chat/completions', '200', 1],
        ['/v1/models/{id}', '200', 1],
        ['/v1/models/{id}', '404', 1],
        ['/v1/other', '404', 1],
        ['other', '404', 1],
        ['other', '200', 1],
      ]),
    );
    expect(got).toHaveLength(6);
  });

  it('an unknown upstream is "other" in the latency histogram and the error counter', async () => {
    const m = metrics();
    m.upstreamResponse('primary', 200, 0.2);
    m.upstreamResponse('not-configured', 503, 0.3);
    const counts = (await samples(m, 'guildgate_upstream_latency_seconds'))
      .filter((s) => s.labels.le === '+Inf')
      .map((s) => [s.labels.upstream, s.value]);
    expect(counts).toEqual([
      ['primary', 1],
      ['other', 1],
    ]);
    expect(await samples(m, 'guildgate_upstream_errors_total')).toEqual([
      { labels: { upstream: 'other', kind: 'status_5xx' }, value: 1 },
    ]);
  });

  it('refusal reasons are capped: past 64 distinct codes the rest count as "other"', async () => {
    const m = metrics();
    for (let i = 0; i < 70; i++) m.refusal(`code_${i}`);
    m.refusal('code_0');
    const got = await samples(m, 'guildgate_refusals_total');
    expect(got).toHaveLength(65);
    expect(got.find((s) => s.labels.reason === 'code_0')?.value).toBe(2);
    expect(got.find((s) => s.labels.reason === 'other')?.value).toBe(6);
  });
});

describe('cells and scrape-time values', () => {
  it('increments between scrapes are added once, not again at the next scrape', async () => {
    const m = metrics();
    m.response('/healthz', 200);
    expect((await samples(m, 'guildgate_http_requests_total'))[0]?.value).toBe(1);
    expect((await samples(m, 'guildgate_http_requests_total'))[0]?.value).toBe(1);
    m.response('/healthz', 200);
    m.response('/healthz', 200);
    expect((await samples(m, 'guildgate_http_requests_total'))[0]?.value).toBe(3);
  });

  it('gauges read their sources when scraped', async () => {
    const m = metrics();
    let depth = 5;
    m.watch({ usageQueueDepth: () => depth, requestsInFlight: () => 2, streamsInFlight: () => 1 });
    expect((await samples(m, 'guildgate_usage_queue_depth'))[0]?.value).toBe(5);
    depth = 0;
    expect((await samples(m, 'guildgate_usage_queue_depth'))[0]?.value).toBe(0);
    expect((await samples(m, 'guildgate_requests_in_flight'))[0]?.value).toBe(2);
    expect((await samples(m, 'guildgate_streams_in_flight'))[0]?.value).toBe(1);
  });

  it('two instances in one process keep separate counts', async () => {
    const a = metrics();
    const b = metrics();
    a.refusal('invalid_api_key');
    expect(await samples(a, 'guildgate_refusals_total')).toHaveLength(1);
    expect(await samples(b, 'guildgate_refusals_total')).toHaveLength(0);
  });
});

describe('upstream latency histogram', () => {
  it('writes exactly what a prom-client histogram with the same observations writes', async () => {
    const m = metrics();
    const reference = new Registry();
    const h = new Histogram({
      name: 'guildgate_upstream_latency_seconds',
      help: 'Time from sending a request upstream to its response headers, by upstream.',
      labelNames: ['upstream'],
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120],
      registers: [reference],
    });
    for (const [upstream, seconds] of [
      ['primary', 0.03],
      ['primary', 0.05],
      ['primary', 0.2],
      ['primary', 7.5],
      ['primary', 500],
      ['other', 1],
    ] as const) {
      m.upstreamResponse(upstream === 'other' ? 'unknown-upstream' : upstream, 200, seconds);
      h.observe({ upstream }, seconds);
    }
    expect(await m.registry.getSingleMetricAsString('guildgate_upstream_latency_seconds')).toBe(
      await reference.getSingleMetricAsString('guildgate_upstream_latency_seconds'),
    );
  });
});

describe('InFlight', () => {
  it('counts streams apart from other requests and forgets both when they finish', async () => {
    const inflight = new InFlight();
    let endStream!: () => void;
    let failJson!: (e: Error) => void;
    const stream = inflight.track(new Promise<void>((r) => (endStream = r)), true);
    const json = inflight.track(new Promise<void>((_r, f) => (failJson = f)));
    expect([inflight.size, inflight.streams]).toEqual([2, 1]);
    endStream();
    await stream;
    expect([inflight.size, inflight.streams]).toEqual([1, 0]);
    failJson(new Error('upstream gone'));
    await json.catch(() => {});
    expect([inflight.size, inflight.streams]).toEqual([0, 0]);
  });
});

describe('limiter failure policy', () => {
  it('reports each call the primary store failed, and not the fallback answers', async () => {
    const memory = () => ({
      rate: new MemoryRateLimiter(),
      concurrency: new MemoryConcurrencyLimiter(),
      budget: new MemoryTokenBudget(),
    });
    const down = memory();
    down.rate = { consume: () => Promise.reject(new Error('ECONNREFUSED')) } as unknown as MemoryRateLimiter;
    let failures = 0;
    const quiet = { warn() {}, info() {} };
    const limits = withFailurePolicy(down, memory(), 'open', quiet, {
      probeAfterMs: 60_000,
      onStoreFailure: () => failures++,
    });
    expect((await limits.rate.consume('k', 10)).allowed).toBe(true);
    // The circuit is open now: the next call skips the primary, so it is not a new failure.
    expect((await limits.rate.consume('k', 10)).allowed).toBe(true);
    expect(failures).toBe(1);
  });
});

describe('token check', () => {
  const check = tokenCheck('t'.repeat(40));
  it('accepts only the exact bearer token', () => {
    expect(check(`Bearer ${'t'.repeat(40)}`)).toBe(true);
    expect(check(`bearer ${'t'.repeat(40)}`)).toBe(true);
    expect(check(`Bearer ${'t'.repeat(39)}`)).toBe(false);
    expect(check(`Bearer ${'t'.repeat(41)}`)).toBe(false);
    expect(check('t'.repeat(40))).toBe(false);
    expect(check(undefined)).toBe(false);
    expect(check('Bearer ')).toBe(false);
  });
  it('without a token everything passes (the listener is then guarded by where it binds)', () => {
    expect(tokenCheck(undefined)(undefined)).toBe(true);
  });
});

describe('config', () => {
  function problems(raw: unknown, env: Record<string, string> = {}): string[] {
    try {
      buildConfig(raw, env, 'test');
    } catch (err) {
      if (err instanceof ConfigError) return err.problems;
      throw err;
    }
    return [];
  }

  it('defaults: no listener, loopback address, no token', () => {
    const cfg = buildConfig({}, {}, null);
    expect(cfg.metrics).toEqual({ enabled: false, listen: '127.0.0.1:9464' });
    expect(cfg.env.metricsToken).toBeUndefined();
  });

  it('a bad listen address, a short token and a clash with the relay port are named by field', () => {
    expect(problems({ metrics: { listen: '9464' } })).toEqual([expect.stringMatching(/^metrics\.listen: host:port/)]);
    expect(problems({ metrics: { listen: 'localhost:70000' } })).toEqual([
      expect.stringMatching(/^metrics\.listen: the port/),
    ]);
    expect(problems({ metrics: { enabled: 'yes' } })).toEqual([expect.stringMatching(/^metrics\.enabled: /)]);
    const short = problems({}, { GUILDGATE_METRICS_TOKEN: 'short-token' });
    expect(short).toEqual([expect.stringMatching(/^GUILDGATE_METRICS_TOKEN: at least 32/)]);
    expect(short.join()).not.toContain('short-token');
    expect(
      problems({ server: { host: '127.0.0.1', port: 9000 }, metrics: { enabled: true, listen: '127.0.0.1:9000' } }),
    ).toEqual([expect.stringMatching(/^metrics\.listen: is the relay's own address/)]);
  });

  it('accepts IPv6 and names, reads the token, and warns about an open listener without one', () => {
    expect(buildConfig({ metrics: { listen: '[::1]:9464' } }, {}, null).metrics.listen).toBe('[::1]:9464');
    const token = 'x'.repeat(32);
    expect(buildConfig({}, { GUILDGATE_METRICS_TOKEN: token }, null).env.metricsToken).toBe(token);
    const open = buildConfig({ metrics: { enabled: true, listen: '0.0.0.0:9464' } }, {}, null);
    expect(configWarnings(open)).toContainEqual(expect.stringContaining('metrics.listen (0.0.0.0:9464)'));
    const guarded = buildConfig(
      { metrics: { enabled: true, listen: '0.0.0.0:9464' } },
      { GUILDGATE_METRICS_TOKEN: token },
      null,
    );
    expect(configWarnings(guarded).join()).not.toContain('metrics.listen');
    const loopback = buildConfig({ metrics: { enabled: true } }, {}, null);
    expect(configWarnings(loopback).join()).not.toContain('metrics.listen');
  });
});
