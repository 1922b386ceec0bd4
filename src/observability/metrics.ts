// Prometheus metrics on a registry of their own (never prom-client's global one), so several relays
// in one process (tests, the demo) keep separate counts. Labels are bounded: routes from a fixed
// list, models and upstreams from the config (anything else is "other"), status codes, error codes.
// No label ever carries a key, a key id or a Discord id.
//
// The per-request series do not go through prom-client on the request path: prom-client hashes
// the label set into a string on every `inc`/`observe` (0.3 to 1.5 µs each, measured). Instead each
// label set resolves to a cached cell (a few Map lookups by values the caller already has) and the
// request adds to it: counter cells are drained into prom-client counters when Prometheus scrapes,
// the latency histogram is a small metric of our own that the registry formats like its own.
import { Counter, collectDefaultMetrics, Gauge, type Metric, Registry } from 'prom-client';
import type { UsageRecord, UsageStatus } from '../domain/types.js';
import type { Metrics, ScrapeSources, UpstreamErrorKind } from './types.js';

/** Label value for whatever is not in the configured or known set. */
export const OTHER = 'other';

const EXACT_ROUTES = [
  '/v1/chat/completions',
  '/v1/completions',
  '/v1/embeddings',
  '/v1/models',
  '/healthz',
  '/readyz',
  '/metrics',
];
const MODEL_ROUTE = '/v1/models/{id}';
const V1_OTHER = '/v1/other';

const ENDPOINT_ROUTES: Record<UsageRecord['endpoint'], number> = {
  'chat.completions': 0,
  completions: 1,
  embeddings: 2,
};
const ENDPOINT_ROUTE_LABELS = ['/v1/chat/completions', '/v1/completions', '/v1/embeddings'];
const OUTCOMES: Record<UsageStatus, number> = { ok: 0, client_error: 1, upstream_error: 2, aborted: 3 };
const OUTCOME_LABELS = ['ok', 'client_error', 'upstream_error', 'aborted'];

/** Distinct refusal reasons kept before further ones are counted as "other" (a guard, not a limit in use). */
const MAX_REASONS = 64;

/** Time to response headers: streams answer in well under a second, whole completions take up to minutes. */
const LATENCY_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120];

interface Cell {
  readonly labels: Record<string, string>;
  n: number;
}

/** A prom-client counter fed from cells; `cell` is called once per label set, not per request. */
class CellCounter {
  readonly #cells: Cell[] = [];
  readonly #counter: Counter;

  constructor(registry: Registry, name: string, help: string, labelNames: string[]) {
    const cells = this.#cells;
    this.#counter = new Counter({
      name,
      help,
      labelNames,
      registers: [registry],
      collect() {
        for (const c of cells) {
          if (c.n === 0) continue;
          this.inc(c.labels, c.n);
          c.n = 0;
        }
      },
    });
  }

  cell(labels: Record<string, string>): Cell {
    const c = { labels, n: 0 };
    this.#cells.push(c);
    // The series exists from now on (at 0), so rate() sees its first increment.
    this.#counter.inc(labels, 0);
    return c;
  }
}

interface HistogramSeries {
  readonly labels: Record<string, string>;
  /** Observations per bucket (not cumulative); the last slot is above every bound. */
  readonly counts: Float64Array;
  sum: number;
  count: number;
}

/**
 * A histogram whose `observe` is a bucket scan and three additions. prom-client's registry asks it
 * for its values at scrape time (`get`), cumulates nothing itself and writes it out as a histogram.
 */
class CellHistogram {
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  readonly #series: HistogramSeries[] = [];
  readonly #le: string[];

  constructor(
    registry: Registry,
    readonly name: string,
    readonly help: string,
    private readonly buckets: number[],
  ) {
    this.#le = buckets.map(String);
    registry.registerMetric(this as unknown as Metric);
  }

  series(labels: Record<string, string>): HistogramSeries {
    const s = { labels, counts: new Float64Array(this.buckets.length + 1), sum: 0, count: 0 };
    this.#series.push(s);
    return s;
  }

  observe(s: HistogramSeries, value: number): void {
    const { buckets } = this;
    let i = 0;
    while (i < buckets.length && value > buckets[i]!) i++;
    s.counts[i]!++;
    s.sum += value;
    s.count++;
  }

  async get() {
    const values: Array<{ metricName: string; labels: Record<string, string>; value: number }> = [];
    for (const s of this.#series) {
      let cumulative = 0;
      for (let i = 0; i < this.#le.length; i++) {
        cumulative += s.counts[i]!;
        values.push({
          metricName: `${this.name}_bucket`,
          labels: { le: this.#le[i]!, ...s.labels },
          value: cumulative,
        });
      }
      values.push({ metricName: `${this.name}_bucket`, labels: { le: '+Inf', ...s.labels }, value: s.count });
      values.push({ metricName: `${this.name}_sum`, labels: s.labels, value: s.sum });
      values.push({ metricName: `${this.name}_count`, labels: s.labels, value: s.count });
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  reset(): void {
    for (const s of this.#series) {
      s.counts.fill(0);
      s.sum = 0;
      s.count = 0;
    }
  }
}

interface RouteEntry {
  label: string;
  byStatus: Map<number, Cell>;
}

interface ModelEntry {
  label: string;
  tokens: Cell;
  /** Keyed by route index × 10⁴ + HTTP status × 4 + outcome index: one number, no string building. */
  requests: Map<number, Cell>;
}

export interface PromMetricsOptions {
  /** Configured public model names: the only values the `model` label takes besides "other". */
  models: string[];
  /** Configured upstream names, likewise for `upstream`. */
  upstreams: string[];
  /** prom-client's process and Node.js metrics (event-loop lag, CPU, memory, GC); only where /metrics is served. */
  processMetrics: boolean;
}

export class PromMetrics implements Metrics {
  readonly registry = new Registry();
  #sources: ScrapeSources | null = null;

  readonly #http: CellCounter;
  readonly #routes = new Map<string, RouteEntry>();
  readonly #modelRoute: RouteEntry;
  readonly #v1Other: RouteEntry;
  readonly #otherRoute: RouteEntry;

  readonly #requests: CellCounter;
  readonly #tokens: CellCounter;
  readonly #models = new Map<string, ModelEntry>();
  readonly #otherModel: ModelEntry;

  readonly #refusals: CellCounter;
  readonly #reasons = new Map<string, Cell>();

  readonly #upstreams: Set<string>;
  readonly #latency: CellHistogram;
  /** Latency series of the configured upstreams and "other", made once. */
  readonly #latencyByUpstream = new Map<string, HistogramSeries>();
  readonly #upstreamErrors: Counter<'upstream' | 'kind'>;
  readonly #backendErrors: Counter<'backend' | 'op'>;
  readonly #usageDropped: Counter;

  constructor(opts: PromMetricsOptions) {
    const registry = this.registry;
    this.#http = new CellCounter(
      registry,
      'guildgate_http_requests_total',
      'HTTP responses by route and status code, refusals included.',
      ['route', 'status'],
    );
    const route = (label: string): RouteEntry => ({ label, byStatus: new Map() });
    for (const path of EXACT_ROUTES) this.#routes.set(path, route(path));
    this.#modelRoute = route(MODEL_ROUTE);
    this.#v1Other = route(V1_OTHER);
    this.#otherRoute = route(OTHER);

    this.#requests = new CellCounter(
      registry,
      'guildgate_requests_total',
      'Relayed requests by route, model, HTTP status and outcome (ok, client_error, upstream_error, aborted).',
      ['route', 'model', 'status', 'outcome'],
    );
    this.#tokens = new CellCounter(
      registry,
      'guildgate_tokens_charged_total',
      'Tokens charged to daily budgets (after model weight), by model.',
      ['model'],
    );
    const model = (label: string): ModelEntry => ({
      label,
      tokens: this.#tokens.cell({ model: label }),
      requests: new Map(),
    });
    for (const name of opts.models) this.#models.set(name, model(name));
    this.#otherModel = this.#models.get(OTHER) ?? model(OTHER);

    this.#refusals = new CellCounter(
      registry,
      'guildgate_refusals_total',
      'Requests the relay refused itself (auth, limits, budget, invalid input, shutting down), by error code.',
      ['reason'],
    );

    this.#upstreams = new Set(opts.upstreams);
    this.#latency = new CellHistogram(
      registry,
      'guildgate_upstream_latency_seconds',
      'Time from sending a request upstream to its response headers, by upstream.',
      LATENCY_BUCKETS,
    );
    for (const name of [...opts.upstreams, OTHER]) {
      this.#latencyByUpstream.set(name, this.#latency.series({ upstream: name }));
    }
    this.#upstreamErrors = new Counter({
      name: 'guildgate_upstream_errors_total',
      help: 'Failed upstream calls by upstream and kind (connect, timeout, status_5xx, rate_limited, auth, mid_stream).',
      labelNames: ['upstream', 'kind'],
      registers: [registry],
    });
    this.#backendErrors = new Counter({
      name: 'guildgate_backend_errors_total',
      help: 'Failed operations of backing services: store (usage writes) and Redis (connection, limiter calls).',
      labelNames: ['backend', 'op'],
      registers: [registry],
    });
    this.#usageDropped = new Counter({
      name: 'guildgate_usage_records_dropped_total',
      help: 'Usage records dropped because the write queue overflowed while the store was down.',
      registers: [registry],
    });

    const sources = () => this.#sources;
    const gauge = (name: string, help: string, read: (s: ScrapeSources) => number) =>
      new Gauge({
        name,
        help,
        registers: [registry],
        collect() {
          const s = sources();
          this.set(s ? read(s) : 0);
        },
      });
    gauge('guildgate_usage_queue_depth', 'Usage records waiting to be written to the store.', (s) =>
      s.usageQueueDepth(),
    );
    gauge('guildgate_requests_in_flight', 'Relayed requests (JSON and streams) not yet finished.', (s) =>
      s.requestsInFlight(),
    );
    gauge('guildgate_streams_in_flight', 'Relayed streaming requests not yet finished.', (s) => s.streamsInFlight());

    if (opts.processMetrics) collectDefaultMetrics({ register: registry });
  }

  /** Where the scrape-time gauges read from (the container wires this once the sources exist). */
  watch(sources: ScrapeSources): void {
    this.#sources = sources;
  }

  /** The exposition text and its content type. */
  async scrape(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }

  response(path: string, status: number): void {
    const route = this.#routes.get(path) ?? this.#classify(path);
    let cell = route.byStatus.get(status);
    if (!cell) {
      cell = this.#http.cell({ route: route.label, status: String(status) });
      route.byStatus.set(status, cell);
    }
    cell.n++;
  }

  #classify(path: string): RouteEntry {
    if (path.startsWith('/v1/models/')) return this.#modelRoute;
    if (path.startsWith('/v1/')) return this.#v1Other;
    return this.#otherRoute;
  }

  refusal(code: string): void {
    let cell = this.#reasons.get(code);
    if (!cell) {
      const label = this.#reasons.size < MAX_REASONS ? code : OTHER;
      cell = this.#reasons.get(label) ?? this.#refusals.cell({ reason: label });
      this.#reasons.set(label, cell);
    }
    cell.n++;
  }

  relayed(r: Pick<UsageRecord, 'endpoint' | 'model' | 'httpStatus' | 'status' | 'chargedTokens'>): void {
    const m = this.#models.get(r.model) ?? this.#otherModel;
    const route = ENDPOINT_ROUTES[r.endpoint];
    const outcome = OUTCOMES[r.status];
    const key = route * 10_000 + r.httpStatus * 4 + outcome;
    let cell = m.requests.get(key);
    if (!cell) {
      cell = this.#requests.cell({
        route: ENDPOINT_ROUTE_LABELS[route]!,
        model: m.label,
        status: String(r.httpStatus),
        outcome: OUTCOME_LABELS[outcome]!,
      });
      m.requests.set(key, cell);
    }
    cell.n++;
    m.tokens.n += r.chargedTokens;
  }

  upstreamResponse(upstream: string, status: number, seconds: number): void {
    this.#latency.observe(this.#latencyByUpstream.get(upstream) ?? this.#latencyByUpstream.get(OTHER)!, seconds);
    if (status >= 500) this.upstreamError(upstream, 'status_5xx');
    else if (status === 429) this.upstreamError(upstream, 'rate_limited');
    else if (status === 401 || status === 403) this.upstreamError(upstream, 'auth');
  }

  upstreamError(upstream: string, kind: UpstreamErrorKind): void {
    this.#upstreamErrors.inc({ upstream: this.#upstreamLabel(upstream), kind });
  }

  #upstreamLabel(upstream: string): string {
    return this.#upstreams.has(upstream) ? upstream : OTHER;
  }

  backendError(backend: 'store' | 'redis', op: string): void {
    this.#backendErrors.inc({ backend, op });
  }

  usageDropped(count: number): void {
    this.#usageDropped.inc(count);
  }
}
