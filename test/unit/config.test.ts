// Config loading and validation (src/config/load.ts): files and defaults, every problem reported
// at once by path, cross-references, environment-only secrets that never leak into messages.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { buildConfig, ConfigError, configWarnings, loadConfig } from '../../src/config/load.js';

const root = mkdtempSync(join(tmpdir(), 'gg-config-'));
let dirSeq = 0;

afterAll(() => rmSync(root, { recursive: true, force: true }));

/** A fresh empty folder to use as cwd, with the given files in it. */
function folder(files: Record<string, string> = {}): string {
  const dir = join(root, `case-${++dirSeq}`);
  mkdirSync(dir);
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return dir;
}

/** The ConfigError thrown by `fn` (fails the test when nothing is thrown). */
function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error('expected a ConfigError');
}

/** Problem lines keyed by their path (the text before the first ': '). */
function byPath(err: ConfigError): Map<string, string> {
  return new Map(err.problems.map((p) => [p.slice(0, p.indexOf(': ')), p]));
}

const UPSTREAM = { baseUrl: 'https://api.example.com/v1', apiKeyEnv: 'EXAMPLE_API_KEY' };
const MODELS = { 'gpt-4o-mini': { routes: [{ upstream: 'example', model: 'gpt-4o-mini' }] } };

describe('defaults', () => {
  it('buildConfig with nothing gives a runnable relay on defaults', () => {
    const cfg = buildConfig(undefined, {}, null);
    expect(cfg.server).toMatchObject({
      host: '127.0.0.1',
      port: 8080,
      trustProxy: 'loopback',
      shutdownGraceMs: 15_000,
    });
    expect(cfg.dataDir).toBe('./data');
    expect(cfg.storage).toEqual({ store: 'auto', limits: 'auto' });
    expect(cfg.limits).toMatchObject({ budgetTimeZone: 'UTC', onStoreFailure: 'open', keyCacheTtlMs: 1000 });
    expect(cfg.defaultTier).toBe('free');
    expect(cfg.tiers.free).toEqual({
      rpm: 20,
      maxConcurrent: 2,
      tokensPerDay: 100_000,
      models: ['*'],
      maxTokens: 4096,
    });
    expect(cfg.upstreams).toEqual({});
    expect(cfg.models).toEqual({});
    expect(cfg.publicBaseUrl).toBe('http://127.0.0.1:8080');
    expect(cfg.env).toEqual({ mongodbUri: undefined, redisUrl: undefined, upstreamKeys: {}, logLevel: 'info' });
    expect(cfg.source).toBeNull();
  });

  it('loadConfig in a folder without a config file runs on defaults and says so', () => {
    const cfg = loadConfig({}, folder());
    expect(cfg.source).toBeNull();
    expect(cfg.server.port).toBe(8080);
    const notes = configWarnings(cfg);
    expect(notes.some((n) => n.includes('No config file found'))).toBe(true);
    expect(notes.some((n) => n.includes('No upstreams configured'))).toBe(true);
    expect(notes.some((n) => n.includes('No models configured'))).toBe(true);
  });

  it('publicBaseUrl: brackets an IPv6 host and drops trailing slashes from an explicit one', () => {
    expect(buildConfig({ server: { host: '::1', port: 9000 } }, {}, null).publicBaseUrl).toBe('http://[::1]:9000');
    expect(buildConfig({ server: { publicBaseUrl: 'https://relay.example.org//' } }, {}, null).publicBaseUrl).toBe(
      'https://relay.example.org',
    );
  });

  it('LOG_LEVEL, REDIS_URL and MONGODB_URI come from the environment; empty values count as unset', () => {
    const cfg = buildConfig({}, { LOG_LEVEL: 'debug', REDIS_URL: 'redis://127.0.0.1:6390', MONGODB_URI: '' }, null);
    expect(cfg.env.logLevel).toBe('debug');
    expect(cfg.env.redisUrl).toBe('redis://127.0.0.1:6390');
    expect(cfg.env.mongodbUri).toBeUndefined();
  });
});

describe('config files', () => {
  it('reads guildgate.yaml from the working folder', () => {
    const dir = folder({ 'guildgate.yaml': 'server:\n  port: 9123\nlimits:\n  budgetTimeZone: Asia/Tokyo\n' });
    const cfg = loadConfig({}, dir);
    expect(cfg.source).toBe(join(dir, 'guildgate.yaml'));
    expect(cfg.server.port).toBe(9123);
    expect(cfg.server.host).toBe('127.0.0.1');
    expect(cfg.limits.budgetTimeZone).toBe('Asia/Tokyo');
  });

  it('reads guildgate.json from the working folder', () => {
    const dir = folder({ 'guildgate.json': JSON.stringify({ server: { port: 9124 }, dataDir: '/var/lib/gg' }) });
    const cfg = loadConfig({}, dir);
    expect(cfg.source).toBe(join(dir, 'guildgate.json'));
    expect(cfg.server.port).toBe(9124);
    expect(cfg.dataDir).toBe('/var/lib/gg');
  });

  it('GUILDGATE_CONFIG wins over a default file and is resolved against the working folder', () => {
    const dir = folder({
      'guildgate.yaml': 'server: { port: 1111 }\n',
      'other.yml': 'server: { port: 2222 }\n',
    });
    const cfg = loadConfig({ GUILDGATE_CONFIG: 'other.yml' }, dir);
    expect(cfg.source).toBe(resolve(dir, 'other.yml'));
    expect(cfg.server.port).toBe(2222);
  });

  it('an empty YAML file means defaults', () => {
    const cfg = loadConfig({}, folder({ 'guildgate.yaml': '# nothing here yet\n' }));
    expect(cfg.server.port).toBe(8080);
    expect(cfg.source).not.toBeNull();
  });

  it('GUILDGATE_CONFIG pointing at a missing file is an error naming the file', () => {
    const dir = folder();
    const err = configError(() => loadConfig({ GUILDGATE_CONFIG: 'nope/guildgate.yaml' }, dir));
    expect(err.source).toBe(resolve(dir, 'nope/guildgate.yaml'));
    expect(err.problems).toHaveLength(1);
    expect(err.problems[0]).toMatch(/not found/);
    expect(err.message).toContain(resolve(dir, 'nope/guildgate.yaml'));
  });

  it('unparseable YAML and JSON are errors that name the file', () => {
    const yamlDir = folder({ 'guildgate.yaml': 'server:\n  port: [8080\n' });
    const y = configError(() => loadConfig({}, yamlDir));
    expect(y.problems[0]).toMatch(/^cannot parse/);
    expect(y.message).toContain(join(yamlDir, 'guildgate.yaml'));

    const jsonDir = folder({ 'guildgate.json': '{ "server": { "port": 8080, } }' });
    const j = configError(() => loadConfig({}, jsonDir));
    expect(j.problems[0]).toMatch(/^cannot parse/);
  });

  it('a file that is not a mapping is reported at the root', () => {
    const err = configError(() => loadConfig({}, folder({ 'guildgate.yaml': '- just\n- a list\n' })));
    expect(err.problems).toEqual([expect.stringMatching(/^\(root\): /)]);
  });

  it('guildgate.example.yaml at the repo root is valid', () => {
    const cfg = loadConfig({ GUILDGATE_CONFIG: 'guildgate.example.yaml' }, resolve(import.meta.dirname, '../..'));
    expect(Object.keys(cfg.upstreams)).toEqual(['openai']);
    expect(cfg.models['gpt-4o']?.tokenWeight).toBe(15);
    expect(cfg.models['text-embedding-3-small']?.kind).toBe('embedding');
    expect(configWarnings(cfg)).toContainEqual(expect.stringContaining('OPENAI_API_KEY'));
  });

  it('guildgate.example.yaml shows the real defaults, as its header promises', () => {
    const example = loadConfig({ GUILDGATE_CONFIG: 'guildgate.example.yaml' }, resolve(import.meta.dirname, '../..'));
    const defaults = buildConfig({}, {}, null);
    for (const section of [
      'server',
      'dataDir',
      'storage',
      'limits',
      'usage',
      'gates',
      'defaultTier',
      'tiers',
    ] as const) {
      expect(example[section], section).toEqual(defaults[section]);
    }
    // The example upstream spells out the default timeouts and pool size.
    const spelled = buildConfig({ upstreams: { u: { baseUrl: 'https://x.example/v1' } } }, {}, null).upstreams.u!;
    expect(example.upstreams.openai!.timeouts).toEqual(spelled.timeouts);
    expect(example.upstreams.openai!.connections).toBe(spelled.connections);
  });
});

describe('invalid fields', () => {
  it('reports every invalid field at once, each by its path', () => {
    const dir = folder({
      'guildgate.yaml': [
        'server:',
        '  port: high', // not a number
        '  hots: 0.0.0.0', // typo: unknown key
        'storage:',
        '  store: mysql', // not an option
        'limits:',
        '  onStoreFailure: maybe',
        'tiers:',
        '  free:',
        '    rpm: 0', // must be positive
        '    tokensPerDay: lots',
        'upstreams:',
        '  example:',
        '    baseUrl: ftp://api.example.com', // not http(s)
        'models:',
        '  broken:',
        '    routes: []', // needs one route
        '',
      ].join('\n'),
    });
    const err = configError(() => loadConfig({}, dir));
    const paths = byPath(err);
    for (const p of [
      'server.port',
      'server',
      'storage.store',
      'limits.onStoreFailure',
      'tiers.free.rpm',
      'tiers.free.tokensPerDay',
      'upstreams.example.baseUrl',
      'models.broken.routes',
    ]) {
      expect(paths.has(p), `${p} in:\n${err.message}`).toBe(true);
    }
    expect(paths.get('server')).toContain('hots');
    expect(err.message).toContain(join(dir, 'guildgate.yaml'));
  });

  it('reports unknown names used as references: upstream in a route, model in a tier, defaultTier, time zone', () => {
    const err = configError(() =>
      buildConfig(
        {
          defaultTier: 'gold',
          limits: { budgetTimeZone: 'Mars/Olympus_Mons' },
          tiers: { free: { rpm: 10, tokensPerDay: 1000, models: ['gpt-4o-mini', 'gpt-5-turbo'] } },
          upstreams: { example: UPSTREAM },
          models: {
            ...MODELS,
            'gpt-4o': {
              routes: [
                { upstream: 'example', model: 'x' },
                { upstream: 'azure', model: 'y' },
              ],
            },
          },
        },
        {},
        'test',
      ),
    );
    const paths = byPath(err);
    expect(paths.get('defaultTier')).toContain('"gold"');
    expect(paths.get('tiers.free.models.1')).toContain('"gpt-5-turbo"');
    expect(paths.get('models.gpt-4o.routes.1.upstream')).toContain('"azure"');
    expect(paths.has('limits.budgetTimeZone')).toBe(true);
    expect(err.problems).toHaveLength(4);
  });

  it('reports unknown references together with type errors in the same file', () => {
    const err = configError(() =>
      buildConfig(
        {
          defaultTier: 'gold',
          server: { port: 'high' },
          models: { m: { routes: [{ upstream: 'nope', model: 'm' }] } },
        },
        {},
        't',
      ),
    );
    const paths = byPath(err);
    expect([...paths.keys()].sort()).toEqual(['defaultTier', 'models.m.routes.0.upstream', 'server.port']);
  });

  it('reports unknown references even when a whole number field holds a fraction', () => {
    // A fractional value for an integer field must not hide the other problems of the file.
    const err = configError(() =>
      buildConfig({ defaultTier: 'gold', tiers: { free: { rpm: 1.5, tokensPerDay: 10 } } }, {}, 't'),
    );
    const paths = byPath(err);
    expect([...paths.keys()].sort()).toEqual(['defaultTier', 'tiers.free.rpm']);
  });

  it('a "*" model wildcard and real model names in a tier are fine', () => {
    const cfg = buildConfig(
      {
        tiers: {
          free: { rpm: 1, tokensPerDay: 1, models: ['*'] },
          pro: { rpm: 1, tokensPerDay: 1, models: ['gpt-4o-mini'] },
        },
        upstreams: { example: UPSTREAM },
        models: MODELS,
      },
      {},
      't',
    );
    expect(cfg.tiers.pro?.models).toEqual(['gpt-4o-mini']);
  });
});

describe('server overrides from the environment', () => {
  it('GUILDGATE_HOST, GUILDGATE_PORT and GUILDGATE_TRUST_PROXY win over the file', () => {
    const file = { server: { host: '127.0.0.1', port: 9000, trustProxy: false } };
    const cfg = buildConfig(
      file,
      { GUILDGATE_HOST: '0.0.0.0', GUILDGATE_PORT: '8080', GUILDGATE_TRUST_PROXY: '1' },
      't',
    );
    expect(cfg.server).toMatchObject({ host: '0.0.0.0', port: 8080, trustProxy: 1 });
    expect(buildConfig({}, { GUILDGATE_TRUST_PROXY: 'true' }, 't').server.trustProxy).toBe(true);
    expect(buildConfig(file, {}, 't').server).toMatchObject({ host: '127.0.0.1', port: 9000, trustProxy: false });
  });

  it('a bad override is reported under the field it overrides', () => {
    const err = configError(() => buildConfig({}, { GUILDGATE_PORT: 'eighty' }, 't'));
    expect([...byPath(err).keys()]).toEqual(['server.port']);
  });
});

describe('environment and secrets', () => {
  const SECRET = 'sk-test-8d1f0c6e2b9a4f7d93c5e1a0b2c4d6e8';
  const MONGO_PASSWORD = 'hunter2-very-secret';

  it('storage.store mongo without MONGODB_URI names the variable; likewise limits redis and REDIS_URL', () => {
    const err = configError(() => buildConfig({ storage: { store: 'mongo', limits: 'redis' } }, {}, 't'));
    expect(byPath(err).get('storage.store')).toContain('MONGODB_URI');
    expect(byPath(err).get('storage.limits')).toContain('REDIS_URL');
  });

  it('resolves an upstream key from its apiKeyEnv variable', () => {
    const cfg = buildConfig({ upstreams: { example: UPSTREAM }, models: MODELS }, { EXAMPLE_API_KEY: SECRET }, 't');
    expect(cfg.env.upstreamKeys.example).toBe(SECRET);
    expect(configWarnings(cfg).join('\n')).not.toContain(SECRET);
  });

  it('configWarnings lists each upstream whose key variable is unset, by name and variable', () => {
    const cfg = buildConfig(
      {
        upstreams: {
          example: UPSTREAM,
          other: { baseUrl: 'https://other.example/v1', apiKeyEnv: 'OTHER_KEY' },
          local: { baseUrl: 'http://127.0.0.1:11434/v1' },
        },
        models: MODELS,
      },
      { OTHER_KEY: SECRET },
      't',
    );
    const notes = configWarnings(cfg);
    const missing = notes.filter((n) => n.includes('is not set'));
    expect(missing).toHaveLength(1);
    expect(missing[0]).toContain('"example"');
    expect(missing[0]).toContain('EXAMPLE_API_KEY');
    // No warning for an upstream that needs no key, and no secret in any note.
    expect(notes.join('\n')).not.toContain('local');
    expect(notes.join('\n')).not.toContain(SECRET);
  });

  it('never puts environment secrets into error messages', () => {
    const env = {
      EXAMPLE_API_KEY: SECRET,
      MONGODB_URI: `mongodb://admin:${MONGO_PASSWORD}@db.internal:27017/guildgate`,
    };
    const err = configError(() =>
      buildConfig(
        {
          storage: { store: 'mongo', limits: 'redis' },
          upstreams: { example: UPSTREAM },
          models: MODELS,
          server: { port: -1 },
        },
        env,
        't',
      ),
    );
    expect(err.message).not.toContain(SECRET);
    expect(err.message).not.toContain(MONGO_PASSWORD);
    const env2 = configError(() => buildConfig({ storage: { limits: 'redis' } }, env, 't'));
    expect(env2.message).toContain('REDIS_URL');
    expect(env2.message).not.toContain(MONGO_PASSWORD);
  });

  it('does not echo a key pasted into the config file by mistake', () => {
    // A key where the variable name belongs, and a key under a field that does not exist.
    const dir = folder({
      'guildgate.yaml': `upstreams:\n  example:\n    baseUrl: https://api.example.com/v1\n    apiKeyEnv: ${SECRET}\n    apiKey: ${SECRET}\n`,
    });
    const err = configError(() => loadConfig({}, dir));
    expect(byPath(err).has('upstreams.example.apiKeyEnv')).toBe(true);
    expect(byPath(err).get('upstreams.example')).toContain('apiKey');
    expect(err.message).not.toContain(SECRET);
    expect(err.message).not.toContain(SECRET.slice(0, 10));
  });

  it('does not echo file content around a JSON syntax error (it may be a pasted key)', () => {
    const dir = folder({ 'guildgate.json': `{ "upstreams": { "example": { "apiKey": ${SECRET} } } }` });
    const err = configError(() => loadConfig({}, dir));
    expect(err.problems[0]).toMatch(/^cannot parse/);
    expect(err.message).not.toContain(SECRET.slice(0, 8));
  });
});
