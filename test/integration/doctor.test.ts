// `guildgate doctor` as an operator runs it: a temp config pointing at fakes, only stdout, stderr
// and the exit code to go on.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { type FakeDiscord, startFakeDiscord } from '../fakes/discord.js';
import { type FakeUpstream, startFakeUpstream } from '../fakes/openai-upstream.js';
import { type CliRun, runCli } from '../helpers/cli.js';
import { freePort, type RedisServer, startRedis } from '../helpers/redis-server.js';

const TEST_TIMEOUT_MS = 60_000;

const PROVIDER_KEY = 'sk-right-provider-key-0123456789';
const WRONG_KEY = 'sk-wrong-provider-key-9876543210';
const SESSION_SECRET = 'session-secret-abcdefghijklmnopqrstuvwxyz';
const CLIENT_SECRET = 'client-secret-0123456789abcdef';
const REDIS_PASSWORD = 'hunter2-redis-password';

let dir: string;
let upstream: FakeUpstream;
let discord: FakeDiscord;
let redis: RedisServer;

function doctor(config: string, env: Record<string, string>, args: string[] = []): Promise<CliRun> {
  return runCli(['doctor', ...args], { GUILDGATE_CONFIG: config, ...env });
}

function writeConfig(name: string, upstreams: Record<string, { baseUrl: string; apiKeyEnv: string }>): string {
  const file = join(dir, name);
  writeFileSync(
    file,
    JSON.stringify({
      dataDir: join(dir, 'data'),
      upstreams,
      models: { 'gpt-4o-mini': { routes: [{ upstream: Object.keys(upstreams)[0], model: 'gpt-4o-mini' }] } },
      discord: { applicationId: discord.applicationId, guildId: discord.guildId, apiBaseUrl: `${discord.url}/api` },
    }),
  );
  return file;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'gg-doctor-'));
  [upstream, discord, redis] = await Promise.all([
    startFakeUpstream({ name: 'openai', apiKey: PROVIDER_KEY }),
    startFakeDiscord(),
    startRedis(),
  ]);
});

afterAll(async () => {
  await Promise.all([upstream?.close(), discord?.close(), redis?.stop()]);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

it(
  'reports every check ok against working services and exits 0',
  async () => {
    const config = writeConfig('good.json', { openai: { baseUrl: upstream.url, apiKeyEnv: 'OPENAI_API_KEY' } });
    const env = {
      OPENAI_API_KEY: PROVIDER_KEY,
      REDIS_URL: redis.url,
      DISCORD_BOT_TOKEN: discord.token,
      DISCORD_CLIENT_SECRET: CLIENT_SECRET,
      GUILDGATE_SESSION_SECRET: SESSION_SECRET,
    };
    const run = await doctor(config, env);
    expect(run.code, run.stdout + run.stderr).toBe(0);
    const lines = run.stdout.trim().split('\n');
    for (const name of ['config', 'store', 'redis', 'upstream openai', 'discord', 'web']) {
      expect(lines).toContainEqual(expect.stringMatching(new RegExp(`^ok   ${name}: `)));
    }
    expect(lines.filter((l) => l.startsWith('FAIL'))).toEqual([]);
    expect(run.stdout).toMatch(/^ok {3}store: sqlite at .*guildgate\.db$/m);
    expect(upstream.requests.some((r) => r.method === 'GET' && r.path === '/v1/models')).toBe(true);

    const json = await doctor(config, env, ['--json']);
    expect(json.code, json.stderr).toBe(0);
    const results = JSON.parse(json.stdout) as Array<{ name: string; ok: boolean; detail: string }>;
    expect(results.map((r) => r.name)).toEqual(['config', 'store', 'redis', 'upstream openai', 'discord', 'web']);
    expect(results.every((r) => r.ok)).toBe(true);
    for (const secret of [PROVIDER_KEY, discord.token, CLIENT_SECRET, SESSION_SECRET]) {
      expect(run.stdout + run.stderr + json.stdout + json.stderr).not.toContain(secret);
    }
  },
  TEST_TIMEOUT_MS,
);

it(
  'names each failure in plain words, prints no secret and exits 3',
  async () => {
    const closedPort = await freePort();
    const closedRedisPort = await freePort();
    const config = writeConfig('bad.json', {
      openai: { baseUrl: upstream.url, apiKeyEnv: 'OPENAI_API_KEY' },
      backup: { baseUrl: `http://127.0.0.1:${closedPort}/v1`, apiKeyEnv: 'BACKUP_API_KEY' },
    });
    const wrongToken = `${discord.token}x`;
    const run = await doctor(config, {
      OPENAI_API_KEY: WRONG_KEY,
      BACKUP_API_KEY: PROVIDER_KEY,
      REDIS_URL: `redis://:${REDIS_PASSWORD}@127.0.0.1:${closedRedisPort}`,
      DISCORD_BOT_TOKEN: wrongToken,
    });
    expect(run.code, run.stdout + run.stderr).toBe(3);
    expect(run.stdout).toMatch(/^ok {3}config: /m);
    expect(run.stdout).toMatch(/^ok {3}store: /m);
    expect(run.stdout).toContain('FAIL upstream openai: the provider refused the key in OPENAI_API_KEY\n');
    expect(run.stdout).toMatch(
      new RegExp(`^FAIL upstream backup: cannot reach http://127.0.0.1:${closedPort}/v1`, 'm'),
    );
    expect(run.stdout).toContain('FAIL discord: Discord refused DISCORD_BOT_TOKEN\n');
    expect(run.stdout).toMatch(
      new RegExp(`^FAIL redis: cannot reach Redis at redis://:\\*\\*\\*@127.0.0.1:${closedRedisPort}`, 'm'),
    );
    expect(run.stderr).toContain('4 of 6 checks failed');
    const all = run.stdout + run.stderr;
    for (const secret of [WRONG_KEY, PROVIDER_KEY, REDIS_PASSWORD, wrongToken, discord.token]) {
      expect(all).not.toContain(secret);
    }
  },
  TEST_TIMEOUT_MS,
);
