// Reads the config file (YAML or JSON) and the environment, validates both, and reports every
// invalid field by its path.
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { type Config, configSchema, crossReferenceIssues, type FileConfig } from './schema.js';

export class ConfigError extends Error {
  constructor(
    readonly source: string | null,
    readonly problems: string[],
  ) {
    super(`Invalid configuration${source ? ` in ${source}` : ''}:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

const DEFAULT_FILES = ['guildgate.yaml', 'guildgate.yml', 'guildgate.json'];

/** The config file to use: GUILDGATE_CONFIG, else the first default name present in `cwd`. */
export function findConfigFile(env: NodeJS.ProcessEnv, cwd = process.cwd()): string | null {
  if (env.GUILDGATE_CONFIG) return resolve(cwd, env.GUILDGATE_CONFIG);
  for (const f of DEFAULT_FILES) {
    const p = resolve(cwd, f);
    if (existsSync(p)) return p;
  }
  return null;
}

function formatIssues(issues: Array<{ path: PropertyKey[]; message: string }>): string[] {
  return issues.map((i) => `${i.path.length ? i.path.map(String).join('.') : '(root)'}: ${i.message}`);
}

/**
 * GUILDGATE_HOST, GUILDGATE_PORT and GUILDGATE_TRUST_PROXY override their `server` fields, so a
 * container image or a compose file can set how the process listens whatever config is mounted.
 */
function withServerOverrides(raw: unknown, env: NodeJS.ProcessEnv): unknown {
  if (!env.GUILDGATE_HOST && !env.GUILDGATE_PORT && !env.GUILDGATE_TRUST_PROXY) return raw;
  if (raw !== undefined && raw !== null && (typeof raw !== 'object' || Array.isArray(raw))) return raw;
  const obj = (raw ?? {}) as Record<string, unknown>;
  const server = obj.server && typeof obj.server === 'object' ? (obj.server as Record<string, unknown>) : {};
  return {
    ...obj,
    server: {
      ...server,
      ...(env.GUILDGATE_HOST ? { host: env.GUILDGATE_HOST } : {}),
      ...(env.GUILDGATE_PORT ? { port: Number(env.GUILDGATE_PORT) } : {}),
      ...(env.GUILDGATE_TRUST_PROXY ? { trustProxy: parseTrustProxy(env.GUILDGATE_TRUST_PROXY) } : {}),
    },
  };
}

function parseTrustProxy(value: string): unknown {
  if (value === 'true' || value === 'false') return value === 'true';
  return /^\d+$/.test(value) ? Number(value) : value;
}

/** Validates an already-parsed config object plus environment. Throws ConfigError. */
export function buildConfig(raw: unknown, env: NodeJS.ProcessEnv, source: string | null): Config {
  const input = withServerOverrides(raw, env) ?? {};
  const parsed = configSchema.safeParse(input);
  const issues = [...(parsed.success ? [] : parsed.error.issues), ...crossReferenceIssues(input)];
  if (!parsed.success || issues.length) throw new ConfigError(source, formatIssues(issues));
  const file: FileConfig = parsed.data;

  const problems: string[] = [];
  const upstreamKeys: Record<string, string | undefined> = {};
  for (const [name, u] of Object.entries(file.upstreams)) {
    if (u.apiKeyEnv) upstreamKeys[name] = env[u.apiKeyEnv] || undefined;
  }
  const mongodbUri = env.MONGODB_URI || undefined;
  const redisUrl = env.REDIS_URL || undefined;
  if (file.storage.store === 'mongo' && !mongodbUri) {
    problems.push('storage.store: is "mongo" but the environment variable MONGODB_URI is not set');
  }
  if (file.storage.limits === 'redis' && !redisUrl) {
    problems.push('storage.limits: is "redis" but the environment variable REDIS_URL is not set');
  }
  const discordBotToken = env.DISCORD_BOT_TOKEN || undefined;
  if (discordBotToken && !file.discord) {
    problems.push('discord: DISCORD_BOT_TOKEN is set but there is no discord section (applicationId, guildId)');
  }
  const discordClientSecret = env.DISCORD_CLIENT_SECRET || undefined;
  const sessionSecret = env.GUILDGATE_SESSION_SECRET || undefined;
  if (discordClientSecret && !file.discord) {
    problems.push('discord: DISCORD_CLIENT_SECRET is set but there is no discord section (applicationId, guildId)');
  }
  if (discordClientSecret && (sessionSecret?.length ?? 0) < 32) {
    problems.push('GUILDGATE_SESSION_SECRET: the web sign-in needs it, at least 32 random characters');
  }
  const metricsToken = env.GUILDGATE_METRICS_TOKEN || undefined;
  if (metricsToken && metricsToken.length < 32) {
    problems.push('GUILDGATE_METRICS_TOKEN: at least 32 random characters (e.g. `openssl rand -base64 32`)');
  }
  if (file.metrics.enabled && file.server.port !== 0 && isSameAddress(file.metrics.listen, file.server)) {
    problems.push("metrics.listen: is the relay's own address (server.host:server.port); pick another port");
  }
  if (problems.length) throw new ConfigError(source, problems);

  const host = file.server.host.includes(':') ? `[${file.server.host}]` : file.server.host;
  return {
    ...file,
    env: {
      mongodbUri,
      redisUrl,
      upstreamKeys,
      discordBotToken,
      discordClientSecret,
      sessionSecret,
      metricsToken,
      logLevel: env.LOG_LEVEL || 'info',
    },
    source,
    publicBaseUrl: (file.server.publicBaseUrl ?? `http://${host}:${file.server.port}`).replace(/\/+$/, ''),
  };
}

/** Splits a validated `metrics.listen` (`host:port`, `[::1]:9464` for IPv6). */
export function parseListen(listen: string): { host: string; port: number } {
  const at = listen.lastIndexOf(':');
  return { host: listen.slice(0, at).replace(/^\[(.*)\]$/, '$1'), port: Number(listen.slice(at + 1)) };
}

function isSameAddress(listen: string, server: { host: string; port: number }): boolean {
  const { host, port } = parseListen(listen);
  return port === server.port && host === server.host;
}

/**
 * Where a parse error is, without quoting the file: JSON.parse messages include a snippet of the
 * text, which may hold a secret someone pasted in by mistake.
 */
function parseErrorWhere(err: unknown, text: string): string {
  const yamlPos = (err as { linePos?: Array<{ line: number; col: number }> }).linePos?.[0];
  if (yamlPos) return `invalid YAML at line ${yamlPos.line}, column ${yamlPos.col}`;
  const at = /position (\d+)/.exec(String((err as Error).message));
  if (!at) return 'invalid JSON';
  const before = text.slice(0, Number(at[1]));
  const line = before.split('\n').length;
  return `invalid JSON at line ${line}, column ${before.length - before.lastIndexOf('\n')}`;
}

/** Loads `.env` (if present), the config file (if any) and validates everything. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env, cwd = process.cwd()): Config {
  const dotenv = resolve(cwd, '.env');
  if (env === process.env && existsSync(dotenv)) process.loadEnvFile(dotenv);
  const file = findConfigFile(env, cwd);
  let raw: unknown = {};
  if (file) {
    if (!existsSync(file)) throw new ConfigError(file, [`file not found (from GUILDGATE_CONFIG)`]);
    const text = readFileSync(file, 'utf8');
    try {
      raw = file.endsWith('.json') ? JSON.parse(text) : parseYaml(text);
    } catch (err) {
      throw new ConfigError(file, [`cannot parse: ${parseErrorWhere(err, text)}`]);
    }
  }
  return buildConfig(raw, env, file);
}

/** Human notes about what a config leaves out (for startup and `config check`). */
export function configWarnings(cfg: Config): string[] {
  const notes: string[] = [];
  if (!cfg.source) notes.push('No config file found (guildgate.yaml or GUILDGATE_CONFIG): running on defaults.');
  if (Object.keys(cfg.upstreams).length === 0) {
    notes.push(
      'No upstreams configured: the relay has nothing to forward to. See guildgate.example.yaml, or try `npm run demo`.',
    );
  }
  if (Object.keys(cfg.models).length === 0)
    notes.push('No models configured: /v1/models is empty and every model answers 404.');
  if (cfg.discord && !cfg.env.discordBotToken) {
    notes.push('A discord section is configured but DISCORD_BOT_TOKEN is not set: the bot does not run.');
  }
  if (cfg.metrics.enabled && !cfg.env.metricsToken && !/^(127\.|\[::1\]:|localhost:)/.test(cfg.metrics.listen)) {
    notes.push(
      `metrics.listen (${cfg.metrics.listen}) is not a loopback address and GUILDGATE_METRICS_TOKEN is not set: anyone who reaches it can read the metrics.`,
    );
  }
  for (const [name, u] of Object.entries(cfg.upstreams)) {
    if (u.apiKeyEnv && !cfg.env.upstreamKeys[name]) {
      notes.push(`Upstream "${name}": environment variable ${u.apiKeyEnv} is not set; requests go without a key.`);
    }
  }
  return notes;
}
