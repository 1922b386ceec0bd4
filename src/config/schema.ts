// The one configuration schema. Secrets (API keys, URIs with passwords) come from the environment;
// everything else from the config file. Parsed once at boot into a typed `Config`.
import { z } from 'zod';

const name = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._:/-]*$/, 'letters, digits and . _ : / - only');
const positiveInt = z.number().int().positive();

export const tierSchema = z.strictObject({
  /** Requests per minute per key. */
  rpm: positiveInt,
  /** Requests in flight per key. */
  maxConcurrent: positiveInt.default(4),
  /** Weighted tokens per budget day. */
  tokensPerDay: positiveInt,
  /** Public model names this tier may call; `*` means every configured model. */
  models: z.array(z.string().min(1)).min(1).default(['*']),
  /** Upper bound for `max_tokens`; requests asking for more are clamped to it. */
  maxTokens: positiveInt.default(4096),
  /** Share of each cost cap this tier may fill (see `costCap`); lower shares are shed first. Default 1. */
  capShare: z.number().positive().max(1).optional(),
});

export const upstreamSchema = z.strictObject({
  /** Base URL including the version path, e.g. https://api.openai.com/v1 */
  baseUrl: z.url({ protocol: /^https?$/ }),
  /** Name of the environment variable holding the provider API key (never the key itself). */
  apiKeyEnv: z
    .string()
    .regex(/^[A-Z_][A-Z0-9_]*$/, 'an environment variable name')
    .optional(),
  timeouts: z
    .strictObject({
      connectMs: positiveInt.default(5_000),
      /** Until response headers arrive. */
      firstByteMs: positiveInt.default(60_000),
      /** Longest silence between two body chunks. */
      idleMs: positiveInt.default(60_000),
    })
    .prefault({}),
  /** Keep-alive connections per upstream. */
  connections: positiveInt.default(64),
});

const routeSchema = z.strictObject({ upstream: name, model: z.string().min(1) });

export const modelSchema = z.strictObject({
  /** Tried in order; the next one is used on connect error, 5xx or 429 before the first byte. */
  routes: z.array(routeSchema).min(1),
  /** Tokens are multiplied by this when charged to the daily budget. */
  tokenWeight: z.number().positive().default(1),
  /** Which endpoints the model serves. */
  kind: z.enum(['chat', 'embedding']).default('chat'),
  /**
   * Completion cap the relay adds when a client sends none (so a reservation is an upper bound).
   * Reasoning models (OpenAI o-series, gpt-5) accept only `max_completion_tokens`.
   */
  maxTokensParam: z.enum(['max_tokens', 'max_completion_tokens']).default('max_tokens'),
  /**
   * Most prompt tokens one image input can cost on this model, reserved per image. The default is
   * OpenAI's GPT-4o figure for the largest high-detail image (85 + 8 tiles × 170); models that bill
   * images at a multiple (gpt-4o-mini) need their own figure.
   */
  imageTokens: positiveInt.default(1_445),
  ownedBy: z.string().default('guildgate'),
  /** Provider price in `costCap.currency` per million tokens; required when a currency cap can reach the model. */
  price: z.strictObject({ inputPerMTokens: z.number().min(0), outputPerMTokens: z.number().min(0) }).optional(),
});

const capLimitsSchema = z
  .strictObject({
    /** Budget tokens (after each model's tokenWeight) per budget day. */
    tokensPerDay: positiveInt.optional(),
    /** Currency per budget day, priced with `models.<name>.price`. */
    currencyPerDay: z.number().positive().optional(),
  })
  .refine(
    (c) => c.tokensPerDay !== undefined || c.currencyPerDay !== undefined,
    'set tokensPerDay and/or currencyPerDay',
  );

/** Operator cost cap: daily ceilings for the whole relay and per upstream, shed by tier `capShare`. */
export const costCapSchema = z.strictObject({
  currency: z
    .string()
    .regex(/^[A-Z]{3}$/, 'an ISO currency code such as USD')
    .default('USD'),
  relay: capLimitsSchema.optional(),
  /** Upstream name → its own caps; a model counts against its primary (first route's) upstream. */
  upstreams: z.record(name, capLimitsSchema).default({}),
});

const snowflake = (what: string) => z.string().regex(/^\d{17,20}$/, `a Discord ${what} id`);

export const discordSchema = z.strictObject({
  /** The application (client) id from the Developer Portal. */
  applicationId: snowflake('application'),
  /** The one server whose members may get keys. */
  guildId: snowflake('server'),
  /** Members holding any of these roles may moderate keys (besides Manage Server). */
  moderatorRoleIds: z.array(snowflake('role')).default([]),
  /** Channel where every moderation action is posted; none when unset. */
  modLogChannelId: snowflake('channel').optional(),
  /** What happens to a member's key when they leave the server. */
  leavePolicy: z.enum(['suspend', 'revoke']).default('suspend'),
  /** Role id → tier: a member holding one of these roles gets that tier (first match in this order). */
  roleTiers: z.record(snowflake('role'), name).default({}),
  /** REST base without the version, passed to discord.js as `rest.api` (proxies and tests point it elsewhere). */
  apiBaseUrl: z.url({ protocol: /^https?$/ }).default('https://discord.com/api'),
  /** Whether the Server Members privileged intent is enabled (leave/role events); without it the reconciler catches up. */
  membersIntent: z.boolean().default(true),
  /** How often every live key's holder is re-checked against the server. */
  reconcileIntervalMs: positiveInt.default(5 * 60_000),
  /** How long a newly shown key stays in the reply before it is edited out. */
  keyRevealMs: positiveInt.max(14 * 60_000).default(3 * 60_000),
});

export const webSchema = z.strictObject({
  /** Discord's OAuth2 authorize page (a proxy or a test double may stand in). */
  authorizeUrl: z.url({ protocol: /^https?$/ }).default('https://discord.com/oauth2/authorize'),
  /** Discord's OAuth2 token endpoint; revocation is `<tokenUrl>/revoke`. */
  tokenUrl: z.url({ protocol: /^https?$/ }).default('https://discord.com/api/oauth2/token'),
  /** How long a signed-in session lasts without use. */
  sessionTtlMs: positiveInt.default(7 * 24 * 3600_000),
  /** Folder with operator-written `privacy.md` and `terms.md`; built-in defaults otherwise. */
  pagesDir: z.string().optional(),
});

/** `host:port`, IPv6 hosts in brackets: where the metrics listener binds. */
const LISTEN = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/;

export const metricsSchema = z.strictObject({
  /**
   * Serve GET /metrics on a listener of its own at `listen`. Off by default: an extra port nobody
   * asked for would clash between replicas on one host, and is unreachable from other containers on
   * loopback anyway. GUILDGATE_METRICS_TOKEN serves it on the main port instead (or as well).
   */
  enabled: z.boolean().default(false),
  /** Loopback by default: only this host (a node exporter's Prometheus, a sidecar) can scrape it. */
  listen: z
    .string()
    .regex(LISTEN, 'host:port, e.g. 127.0.0.1:9464 or [::1]:9464')
    .refine((v) => Number(v.slice(v.lastIndexOf(':') + 1)) <= 65535, 'the port must be 0-65535')
    .default('127.0.0.1:9464'),
});

const DEFAULT_TIERS = {
  free: { rpm: 20, maxConcurrent: 2, tokensPerDay: 100_000, models: ['*'], maxTokens: 4096 },
};

export const configSchema = z.strictObject({
  server: z
    .strictObject({
      host: z.string().default('127.0.0.1'),
      port: z.number().int().min(0).max(65535).default(8080),
      /** Where users reach the relay; shown in snippets. Defaults to http://host:port. */
      publicBaseUrl: z.url().optional(),
      /** Largest accepted request body. */
      bodyLimitBytes: positiveInt.default(2 * 1024 * 1024),
      /**
       * Express `trust proxy`: whose X-Forwarded-For/-Proto to believe (client IP for auth throttling,
       * https for secure cookies). Default: a proxy on the same host (loopback).
       */
      trustProxy: z
        .union([
          z.boolean(),
          z.number().int().min(0),
          // Express presets and address lists: 'loopback', 'uniquelocal', '10.0.0.0/8, 127.0.0.1'...
          z.string().regex(/^[\w.:/, -]+$/, 'true, false, a hop count, or addresses/subnets as express accepts them'),
        ])
        .default('loopback'),
      /** How long in-flight requests may take to finish on shutdown. */
      shutdownGraceMs: positiveInt.default(15_000),
    })
    .prefault({}),
  /** Folder for the SQLite file (embedded backend). */
  dataDir: z.string().default('./data'),
  storage: z
    .strictObject({
      /** auto: MongoDB when MONGODB_URI is set, else SQLite. */
      store: z.enum(['auto', 'sqlite', 'mongo']).default('auto'),
      /** auto: Redis when REDIS_URL is set, else in-process. */
      limits: z.enum(['auto', 'memory', 'redis']).default('auto'),
    })
    .prefault({}),
  limits: z
    .strictObject({
      /** IANA time zone in which the daily budget resets at midnight. */
      budgetTimeZone: z.string().default('UTC'),
      /** Failed authentications per IP per minute before 429. */
      authFailuresPerMinute: positiveInt.default(20),
      /** What to do when the shared limiter store (Redis) is down. */
      onStoreFailure: z.enum(['open', 'closed']).default('open'),
      /** How long a key lookup may be cached in-process. */
      keyCacheTtlMs: z.number().int().min(0).default(1_000),
    })
    .prefault({}),
  usage: z
    .strictObject({
      retentionDays: positiveInt.default(90),
      flushIntervalMs: positiveInt.default(1_000),
      batchSize: positiveInt.default(500),
    })
    .prefault({}),
  /** Who may get a key through Discord (bot and web sign-in). Operators using the CLI bypass them. */
  gates: z
    .strictObject({
      requiredRoleIds: z.array(z.string().regex(/^\d{17,20}$/, 'a Discord role id')).default([]),
      minAccountAgeDays: z.number().min(0).default(7),
      minMemberDays: z.number().min(0).default(0),
      requireScreening: z.boolean().default(true),
    })
    .prefault({}),
  defaultTier: name.default('free'),
  tiers: z.record(name, tierSchema).default(DEFAULT_TIERS),
  models: z.record(z.string().min(1), modelSchema).default({}),
  upstreams: z.record(name, upstreamSchema).default({}),
  costCap: costCapSchema.optional(),
  /** The Discord bot; it runs when this section is present and DISCORD_BOT_TOKEN is set. */
  discord: discordSchema.optional(),
  /**
   * Sign in with Discord and the member dashboard, served by the relay process; on when the discord
   * section is present and DISCORD_CLIENT_SECRET and GUILDGATE_SESSION_SECRET are set.
   */
  web: webSchema.prefault({}),
  /** Prometheus metrics (GET /metrics); see also GUILDGATE_METRICS_TOKEN. */
  metrics: metricsSchema.prefault({}),
});

type Loose = Record<string, unknown>;
const isObject = (v: unknown): v is Loose => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Cross-references between sections (tier → model → upstream, defaultTier, time zone). Checked on
 * the raw input rather than inside the schema so they are reported even when other fields are
 * invalid: one run lists every problem.
 */
export function crossReferenceIssues(raw: unknown): Array<{ path: Array<string | number>; message: string }> {
  const cfg = isObject(raw) ? raw : {};
  const issues: Array<{ path: Array<string | number>; message: string }> = [];
  const tiers = isObject(cfg.tiers) ? cfg.tiers : DEFAULT_TIERS;
  const models = isObject(cfg.models) ? cfg.models : {};
  const upstreams = isObject(cfg.upstreams) ? cfg.upstreams : {};
  const defaultTier = cfg.defaultTier ?? 'free';
  if (typeof defaultTier === 'string' && !Object.hasOwn(tiers, defaultTier)) {
    issues.push({ path: ['defaultTier'], message: `no tier named "${defaultTier}"` });
  }
  for (const [model, m] of Object.entries(models)) {
    const routes = isObject(m) && Array.isArray(m.routes) ? m.routes : [];
    routes.forEach((r: unknown, i) => {
      if (isObject(r) && typeof r.upstream === 'string' && !Object.hasOwn(upstreams, r.upstream)) {
        issues.push({ path: ['models', model, 'routes', i, 'upstream'], message: `no upstream named "${r.upstream}"` });
      }
    });
  }
  for (const [tier, t] of Object.entries(tiers)) {
    const allowed = isObject(t) && Array.isArray(t.models) ? t.models : [];
    allowed.forEach((m: unknown, i) => {
      if (typeof m === 'string' && m !== '*' && !Object.hasOwn(models, m)) {
        issues.push({ path: ['tiers', tier, 'models', i], message: `no model named "${m}"` });
      }
    });
  }
  const roleTiers = isObject(cfg.discord) && isObject(cfg.discord.roleTiers) ? cfg.discord.roleTiers : {};
  for (const [role, tier] of Object.entries(roleTiers)) {
    if (typeof tier === 'string' && !Object.hasOwn(tiers, tier)) {
      issues.push({ path: ['discord', 'roleTiers', role], message: `no tier named "${tier}"` });
    }
  }
  issues.push(...costCapIssues(cfg.costCap, models, upstreams));
  const zone = isObject(cfg.limits) ? cfg.limits.budgetTimeZone : undefined;
  if (typeof zone === 'string') {
    try {
      new Intl.DateTimeFormat('en-US', { timeZone: zone });
    } catch {
      issues.push({ path: ['limits', 'budgetTimeZone'], message: 'not an IANA time zone' });
    }
  }
  return issues;
}

/** Capped upstreams must exist; a currency cap needs the price of every model that can reach it. */
function costCapIssues(
  costCap: unknown,
  models: Loose,
  upstreams: Loose,
): Array<{ path: Array<string | number>; message: string }> {
  if (!isObject(costCap)) return [];
  const issues: Array<{ path: Array<string | number>; message: string }> = [];
  const capped = isObject(costCap.upstreams) ? costCap.upstreams : {};
  for (const u of Object.keys(capped)) {
    if (!Object.hasOwn(upstreams, u))
      issues.push({ path: ['costCap', 'upstreams', u], message: `no upstream named "${u}"` });
  }
  const hasCurrency = (l: unknown) => isObject(l) && l.currencyPerDay !== undefined;
  for (const [model, m] of Object.entries(models)) {
    if (isObject(m) && m.price !== undefined) continue;
    const first = isObject(m) && Array.isArray(m.routes) && isObject(m.routes[0]) ? m.routes[0].upstream : undefined;
    const by = hasCurrency(costCap.relay)
      ? 'costCap.relay.currencyPerDay'
      : typeof first === 'string' && Object.hasOwn(capped, first) && hasCurrency(capped[first])
        ? `costCap.upstreams.${first}.currencyPerDay`
        : null;
    if (by)
      issues.push({
        path: ['models', model, 'price'],
        message: `required: ${by} is set and this model counts against it`,
      });
  }
  return issues;
}

export type FileConfig = z.infer<typeof configSchema>;
export type TierConfig = z.infer<typeof tierSchema>;
export type UpstreamConfig = z.infer<typeof upstreamSchema>;
export type ModelConfig = z.infer<typeof modelSchema>;
export type DiscordConfig = z.infer<typeof discordSchema>;
export type WebConfig = z.infer<typeof webSchema>;
export type MetricsConfig = z.infer<typeof metricsSchema>;

/** Secrets and deployment switches read from the environment. */
export interface EnvConfig {
  mongodbUri: string | undefined;
  redisUrl: string | undefined;
  /** Resolved upstream API keys by upstream name (from each upstream's `apiKeyEnv`). */
  upstreamKeys: Record<string, string | undefined>;
  /** The bot token (DISCORD_BOT_TOKEN); never logged. */
  discordBotToken: string | undefined;
  /** OAuth2 client secret of the Discord application (DISCORD_CLIENT_SECRET); never logged. */
  discordClientSecret: string | undefined;
  /** Signs session cookies (GUILDGATE_SESSION_SECRET, at least 32 characters); never logged. */
  sessionSecret: string | undefined;
  /** Bearer token that enables GET /metrics on the main port (GUILDGATE_METRICS_TOKEN); never logged. */
  metricsToken: string | undefined;
  logLevel: string;
}

export interface Config extends FileConfig {
  env: EnvConfig;
  /** Where the config came from, for messages. */
  source: string | null;
  publicBaseUrl: string;
}
