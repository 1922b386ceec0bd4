// The production packaging: docker-compose.yml as Compose itself reads it (when docker-compose is
// installed; no Docker engine is needed for `config`), its structure, and the Dockerfile's shape.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { buildConfig } from '../../src/config/load.js';

const REPO = resolve(import.meta.dirname, '../..');
const read = (file: string) => readFileSync(join(REPO, file), 'utf8');

interface Service {
  image?: string;
  build?: unknown;
  command?: string[];
  container_name?: string;
  ports?: Array<string | { published?: string | number }>;
  expose?: string[];
  environment?: Record<string, string | null>;
  volumes?: string[];
  depends_on?: Record<string, { condition: string }>;
  healthcheck?: { test: string[] };
  profiles?: string[];
}

// Merge keys (`<<: *anchor`) are YAML 1.1, which Compose reads; the yaml package needs them enabled.
const compose = parse(read('docker-compose.yml'), { merge: true }) as {
  services: Record<string, Service>;
  volumes: Record<string, unknown>;
  [k: string]: unknown;
};
const services = compose.services;
const dockerfile = read('Dockerfile');

/** The host side of a port mapping when it is one fixed port ("8080:8080"), else null. */
function fixedHostPort(mapping: string | { published?: string | number }): string | null {
  const published =
    typeof mapping === 'string' ? mapping.split(':').slice(0, -1).pop() : String(mapping.published ?? '');
  return published && /^\d+$/.test(published) ? published : null;
}

const composeBin = spawnSync('docker-compose', ['version'], { encoding: 'utf8' });
const composeMissing = composeBin.error
  ? 'docker-compose is not installed (apt-get install docker-compose)'
  : composeBin.status !== 0
    ? `docker-compose version failed: ${composeBin.stderr}`
    : null;

describe('docker-compose.yml', () => {
  if (composeMissing) {
    console.warn(`compose validation skipped: ${composeMissing}`);
    it.skip(`is accepted by docker-compose config -q (skipped: ${composeMissing})`, () => {});
  } else {
    it('is accepted by docker-compose config -q, bot profile included', () => {
      for (const args of [
        ['config', '-q'],
        ['--profile', 'bot', 'config', '-q'],
      ]) {
        const r = spawnSync('docker-compose', ['-f', 'docker-compose.yml', ...args], { cwd: REPO, encoding: 'utf8' });
        expect(r.status, `docker-compose ${args.join(' ')}:\n${r.stderr}`).toBe(0);
      }
    });
  }

  it('declares every service, with no top-level name (docker-compose 1.29 rejects it)', () => {
    expect(Object.keys(services).sort()).toEqual(['bot', 'mongo', 'proxy', 'redis', 'relay']);
    expect(compose).not.toHaveProperty('name');
  });

  it('runs MongoDB and Redis with health checks and named volumes', () => {
    const { mongo, redis } = services;
    expect(mongo?.image).toBe('mongo:8');
    expect(mongo?.healthcheck?.test.join(' ')).toMatch(/mongosh .*ping/);
    expect(redis?.image).toBe('redis:7-alpine');
    expect(redis?.command).toEqual(['redis-server', '--appendonly', 'yes']);
    expect(redis?.healthcheck?.test.join(' ')).toContain('redis-cli ping');
    for (const [svc, mount] of [
      [mongo, '/data/db'],
      [redis, '/data'],
    ] as const) {
      const volume = svc?.volumes?.find((v) => v.endsWith(`:${mount}`))?.split(':')[0];
      expect(volume && Object.hasOwn(compose.volumes, volume), `named volume for ${mount}`).toBe(true);
    }
    // A database port may only be published on loopback.
    for (const p of [...(mongo?.ports ?? []), ...(redis?.ports ?? [])]) expect(String(p)).toMatch(/^127\.0\.0\.1:/);
  });

  it('lets the relay scale: no container name, no fixed host port, reached through the load balancer', () => {
    const { relay, proxy } = services;
    expect(relay?.build).toBe('.');
    expect(relay?.container_name).toBeUndefined();
    expect((relay?.ports ?? []).map(fixedHostPort).filter(Boolean)).toEqual([]);
    expect(relay?.expose).toEqual(['8080']);
    expect(relay?.command).toEqual(['node', 'dist/src/main.js']);

    expect(proxy?.ports).toHaveLength(1);
    expect(proxy?.depends_on).toEqual({ relay: { condition: 'service_healthy' } });
    const nginx = proxy?.command?.join('\n') ?? '';
    // Resolved per request through Docker's DNS, so replicas added by --scale are picked up.
    expect(nginx).toContain('resolver 127.0.0.11');
    expect(nginx).toMatch(/set \$\$relay http:\/\/relay:8080;\s+proxy_pass \$\$relay;/);
    expect(nginx).toContain('proxy_buffering off;');
  });

  it('wires the relay to mongo and redis, waits for them, and checks its own readiness', () => {
    const { relay } = services;
    expect(relay?.environment).toMatchObject({
      MONGODB_URI: 'mongodb://mongo:27017/guildgate',
      REDIS_URL: 'redis://redis:6379',
      GUILDGATE_CONFIG: '/app/guildgate.yaml',
    });
    expect(relay?.volumes).toContain('./guildgate.yaml:/app/guildgate.yaml:ro');
    expect(relay?.depends_on).toEqual({
      mongo: { condition: 'service_healthy' },
      redis: { condition: 'service_healthy' },
    });
    expect(relay?.healthcheck?.test.join(' ')).toContain(':8080/readyz');
  });

  it('passes secrets through by name only, each documented in .env.example', () => {
    const envExample = read('.env.example');
    for (const [name, svc] of Object.entries(services)) {
      for (const [key, value] of Object.entries(svc.environment ?? {})) {
        if (!/KEY|TOKEN|SECRET|PASSWORD/.test(key)) continue;
        expect(value, `${name}.${key} must come from the environment`).toBeNull();
        expect(envExample, `${key} in .env.example`).toMatch(new RegExp(`^#? ?${key}=`, 'm'));
      }
    }
    // Every provider key the example config names reaches the relay.
    const example = parse(read('guildgate.example.yaml')) as { upstreams: Record<string, { apiKeyEnv?: string }> };
    for (const u of Object.values(example.upstreams)) {
      if (u.apiKeyEnv) expect(services.relay?.environment).toHaveProperty(u.apiKeyEnv);
    }
  });

  it('keeps the bot behind its profile, on the relay image', () => {
    const { bot, relay } = services;
    expect(bot?.profiles).toEqual(['bot']);
    expect(bot?.image).toBe(relay?.image);
    expect(bot?.environment).toMatchObject({ MONGODB_URI: relay?.environment?.MONGODB_URI });
  });
});

describe('Dockerfile', () => {
  const stages = dockerfile.split(/^FROM /m).slice(1);

  it('builds in one stage and runs from a clean one', () => {
    expect(stages).toHaveLength(2);
    const [build, runtime] = stages as [string, string];
    expect(build).toMatch(/^node:20-bookworm-slim AS build/);
    expect(build).toMatch(/apt-get install [^\n]*python3 make g\+\+/);
    expect(build).toContain('RUN npm ci');
    expect(build).toMatch(/npm run build && npm prune --omit=dev/);
    expect(runtime).toMatch(/^node:20-bookworm-slim\n/);
    for (const path of ['package.json', 'node_modules', 'dist', 'bin', 'guildgate.example.yaml']) {
      expect(runtime).toContain(`COPY --from=build /app/${path} `);
    }
  });

  it('runs as the non-root node user with a health check and the compiled entry', () => {
    const runtime = stages[1] ?? '';
    const users = [...runtime.matchAll(/^USER (\S+)/gm)].map((m) => m[1]);
    expect(users).toEqual(['node']);
    expect(runtime.indexOf('USER node')).toBeLessThan(runtime.indexOf('CMD '));
    expect(runtime).toMatch(/^HEALTHCHECK .*\n?.*\/readyz/m);
    expect(runtime.trim().split('\n').pop()).toBe('CMD ["node", "dist/src/main.js"]');
  });

  it('listens on every interface on 8080 whatever config is mounted', () => {
    const runtime = stages[1] ?? '';
    const env = Object.fromEntries(
      [...runtime.matchAll(/^ENV (.+)$/gm)].flatMap((m) => m[1]!.split(/\s+/).map((kv) => kv.split('=', 2))),
    ) as Record<string, string>;
    expect(runtime).toContain('cp guildgate.example.yaml guildgate.yaml');
    // The baked config (the example, which binds loopback) and an operator's file that sets another address.
    for (const file of [parse(read('guildgate.example.yaml')), { server: { host: '127.0.0.1', port: 9000 } }]) {
      expect(buildConfig(file, env, 'image').server).toMatchObject({ host: '0.0.0.0', port: 8080 });
    }
  });

  it('keeps secrets and local state out of the build context', () => {
    const ignored = read('.dockerignore').split('\n');
    for (const entry of ['.env', '.git', 'node_modules', 'data', 'dist', 'guildgate.yaml']) {
      expect(ignored).toContain(entry);
    }
  });
});
