// The operator CLI as a script sees it: `node bin/guildgate.mjs ...` in the repo root, a temp
// config and data folder, and only stdout, stderr and the exit code to go on. The tests in this file
// run in order and build on each other's state (one SQLite file). Spawns are kept to about 25.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SqliteStore } from '../../src/adapters/sqlite/sqlite-store.js';
import { budgetDay } from '../../src/domain/budget-day.js';
import { hashKey, isWellFormedKey } from '../../src/domain/keys.js';
import type { UsageRecord } from '../../src/domain/types.js';
import { type CliRun, runCli } from '../helpers/cli.js';

const TEST_TIMEOUT_MS = 90_000;

const USER_A = '123456789012345678';
const USER_B = '223456789012345678';
const PAST_DAY = '2026-02-03';

type Run = CliRun;

let dir: string;
let dataDir: string;
let goodConfig: string;
const runs: Run[] = [];
/** Raw keys printed by issue/rotate, with the run that printed each. */
const printedKeys: Array<{ key: string; run: Run }> = [];

async function cli(args: string[], config = goodConfig): Promise<Run> {
  // The config is SQLite + memory: the runner keeps the machine's Redis or MongoDB out.
  const run = await runCli(args, { GUILDGATE_CONFIG: config });
  runs.push(run);
  return run;
}

function keyIdIn(text: string): string {
  const m = text.match(/key_[A-Za-z0-9_-]+/);
  if (!m) throw new Error(`no key id in:\n${text}`);
  return m[0];
}

function count(haystack: string, needle: string): number {
  return haystack.split(needle).length - 1;
}

function json<T = Record<string, unknown>>(run: Run): T {
  expect(run.code, run.stderr).toBe(0);
  return JSON.parse(run.stdout) as T;
}

function usage(over: Partial<UsageRecord> & Pick<UsageRecord, 'requestId' | 'keyId' | 'discordId'>): UsageRecord {
  return {
    model: 'gpt-4o-mini',
    upstream: 'example',
    endpoint: 'chat.completions',
    promptTokens: 100,
    completionTokens: 50,
    chargedTokens: 150,
    estimated: false,
    status: 'ok',
    httpStatus: 200,
    latencyMs: 120,
    stream: false,
    createdAt: new Date(`${PAST_DAY}T10:00:00Z`),
    ...over,
  };
}

async function withStore<T>(fn: (s: SqliteStore) => Promise<T>): Promise<T> {
  const store = SqliteStore.open(join(dataDir, 'guildgate.db'));
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

let keyA = '';
let idA = '';
let keyB = '';
let idB = '';
let rotatedA = '';
let rotatedIdA = '';

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'gg-cli-'));
  dataDir = join(dir, 'data');
  goodConfig = join(dir, 'guildgate.yaml');
  writeFileSync(
    goodConfig,
    [
      `dataDir: ${JSON.stringify(dataDir)}`,
      'storage: { store: sqlite, limits: memory }',
      'tiers:',
      '  free: { rpm: 20, tokensPerDay: 10000 }',
      '  pro: { rpm: 60, tokensPerDay: 1000000 }',
      'upstreams:',
      '  example: { baseUrl: "http://127.0.0.1:9/v1" }',
      'models:',
      '  gpt-4o-mini: { routes: [{ upstream: example, model: gpt-4o-mini }] }',
      '',
    ].join('\n'),
  );
});

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('guildgate CLI', { timeout: TEST_TIMEOUT_MS }, () => {
  it('keys issue prints the key once, on the first line of stdout', async () => {
    const run = await cli(['keys', 'issue', '--discord-id', USER_A]);
    expect(run.code, run.stderr).toBe(0);
    keyA = run.stdout.split('\n')[0]!;
    expect(isWellFormedKey(keyA)).toBe(true);
    expect(count(run.stdout, keyA)).toBe(1);
    expect(run.stdout).toMatch(/shown once/i);
    idA = keyIdIn(run.stdout);
    expect(run.stdout).toContain(keyA.slice(0, 9)); // the display prefix, for recognising it later
    printedKeys.push({ key: keyA, run });
  });

  it('a second key for the same user is refused with exit 1 and a hint to rotate', async () => {
    const run = await cli(['keys', 'issue', '--discord-id', USER_A]);
    expect(run.code).toBe(1);
    expect(run.stdout).toBe('');
    expect(run.stderr).toMatch(/already has a key/i);
    expect(run.stderr).toMatch(/rotate/i);
  });

  it('keys issue --json prints one parseable object with the key', async () => {
    const run = await cli(['keys', 'issue', '--discord-id', USER_B, '--tier', 'pro', '--json']);
    const out = json<{ key: string; id: string; discordId: string; tier: string; status: string }>(run);
    expect(isWellFormedKey(out.key)).toBe(true);
    expect(out).toMatchObject({ discordId: USER_B, tier: 'pro', status: 'active' });
    expect(out.id).toMatch(/^key_/);
    keyB = out.key;
    idB = out.id;
    printedKeys.push({ key: keyB, run });
  });

  it('keys list --json lists both keys without secrets', async () => {
    const rows = json<Array<Record<string, unknown>>>(await cli(['keys', 'list', '--json']));
    expect(rows.map((r) => r.id).sort()).toEqual([idA, idB].sort());
    for (const r of rows) expect(Object.keys(r)).not.toContain('hash');
    expect(rows.find((r) => r.id === idB)).toMatchObject({ discordId: USER_B, tier: 'pro', status: 'active' });
  });

  it('keys rotate prints a new key on the first line, and the old key shows as revoked', async () => {
    const run = await cli(['keys', 'rotate', idA]);
    expect(run.code, run.stderr).toBe(0);
    rotatedA = run.stdout.split('\n')[0]!;
    expect(isWellFormedKey(rotatedA)).toBe(true);
    expect(rotatedA).not.toBe(keyA);
    expect(count(run.stdout, rotatedA)).toBe(1);
    rotatedIdA = keyIdIn(run.stdout);
    expect(rotatedIdA).not.toBe(idA);
    printedKeys.push({ key: rotatedA, run });

    // Human output of `keys show`: the old key, now revoked by the rotation, and its audit trail.
    const old = await cli(['keys', 'show', idA]);
    expect(old.code, old.stderr).toBe(0);
    const [header, row] = old.stdout.split('\n');
    expect(header).toMatch(/^id\s+prefix\s+discordId\s+tier\s+status\s+reason/);
    expect(row).toContain(idA);
    expect(row).toContain(USER_A);
    expect(row).toMatch(/\srevoked\s+rotated\s/);
    expect(old.stdout).toContain('key.issue');
  });

  it('keys suspend without --reason is a usage error (exit 2)', async () => {
    const run = await cli(['keys', 'suspend', rotatedIdA]);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('--reason');
  });

  it('suspend, restore and revoke exit 0 and leave an audit trail; wrong-state changes exit 1', async () => {
    const suspend = await cli(['keys', 'suspend', rotatedIdA, '--reason', 'shared the key in #general']);
    expect(suspend.code, suspend.stderr).toBe(0);
    expect(suspend.stdout).toContain(`Suspended ${rotatedIdA}`);

    const again = await cli(['keys', 'suspend', rotatedIdA, '--reason', 'twice']);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('suspended');

    const restore = await cli(['keys', 'restore', rotatedIdA]);
    expect(restore.code, restore.stderr).toBe(0);

    const revoke = await cli(['keys', 'revoke', rotatedIdA, '--reason', 'left the server']);
    expect(revoke.code, revoke.stderr).toBe(0);

    const shown = json<{ status: string; audit: Array<{ action: string; actor: string; reason: string | null }> }>(
      await cli(['keys', 'show', rotatedIdA, '--json']),
    );
    expect(shown.status).toBe('revoked');
    // Newest first.
    expect(shown.audit.map((a) => a.action)).toEqual(['key.revoke', 'key.restore', 'key.suspend', 'key.rotate']);
    expect(shown.audit.every((a) => a.actor === 'cli')).toBe(true);
    expect(shown.audit[0]!.reason).toBe('left the server');
    expect(shown.audit[2]!.reason).toBe('shared the key in #general');
  });

  it('refuses an unknown tier and an invalid Discord id with a clear message (exit 1 refused, exit 2 bad argument)', async () => {
    const [tier, badId] = await Promise.all([
      cli(['keys', 'tier', idB, 'gold']),
      cli(['keys', 'issue', '--discord-id', '12345']),
    ]);
    expect(tier.code).toBe(1);
    expect(tier.stderr).toContain('no tier named "gold"');
    expect(badId.code).toBe(2);
    expect(badId.stderr).toContain('--discord-id');
    expect(badId.stderr).toContain('12345');
    expect(badId.stderr).toMatch(/Discord user id/);
  });

  it('usage today and usage top run on an empty usage store', async () => {
    const [today, top] = await Promise.all([cli(['usage', 'today']), cli(['usage', 'top', '--json'])]);
    expect(today.code, today.stderr).toBe(0);
    expect(today.stdout).toMatch(/^Usage on \d{4}-\d{2}-\d{2}\n\(none\)\n$/);
    const t = json<{ day: string; users: unknown[] }>(top);
    expect(t.users).toEqual([]);
    expect(t.day).toMatch(/^\d{4}-\d{2}-\d{2}$/);
  });

  it('usage today and usage top report seeded usage per model and per user', async () => {
    await withStore((s) =>
      s.insertUsage(
        [
          usage({ requestId: 'req_cliA1', keyId: idA, discordId: USER_A }),
          usage({
            requestId: 'req_cliA2',
            keyId: rotatedIdA,
            discordId: USER_A,
            chargedTokens: 50,
            promptTokens: 40,
            completionTokens: 10,
          }),
          usage({
            requestId: 'req_cliB1',
            keyId: idB,
            discordId: USER_B,
            chargedTokens: 900,
            promptTokens: 600,
            completionTokens: 300,
          }),
          usage({
            requestId: 'req_cliB2',
            keyId: idB,
            discordId: USER_B,
            model: 'text-embedding-3-small',
            endpoint: 'embeddings',
            promptTokens: 20,
            completionTokens: 0,
            chargedTokens: 20,
          }),
          // Today, for `users show` below.
          usage({ requestId: 'req_cliB3', keyId: idB, discordId: USER_B, createdAt: new Date() }),
        ],
        (r) => budgetDay(r.createdAt, 'UTC'),
      ),
    );
    const [today, top] = await Promise.all([
      cli(['usage', 'today', '--day', PAST_DAY, '--json']),
      cli(['usage', 'top', '--day', PAST_DAY]),
    ]);
    const t = json<{ day: string; models: Array<Record<string, unknown>> }>(today);
    expect(t.day).toBe(PAST_DAY);
    expect(t.models).toContainEqual({
      model: 'gpt-4o-mini',
      users: 2,
      requests: 3,
      promptTokens: 740,
      completionTokens: 360,
      chargedTokens: 1100,
    });
    expect(t.models).toContainEqual(
      expect.objectContaining({ model: 'text-embedding-3-small', requests: 1, chargedTokens: 20 }),
    );

    expect(top.code, top.stderr).toBe(0);
    const lines = top.stdout.trim().split('\n');
    expect(lines[0]).toBe(`Top users on ${PAST_DAY}`);
    // Heaviest user first.
    expect(lines[2]).toContain(USER_B);
    expect(lines[2]).toContain('920');
    expect(lines[3]).toContain(USER_A);
    expect(lines[3]).toContain('200');
  });

  it('users show and users export describe a user; export is JSON without key hashes', async () => {
    const [show, exp] = await Promise.all([cli(['users', 'show', USER_B]), cli(['users', 'export', USER_B])]);
    expect(show.code, show.stderr).toBe(0);
    expect(show.stdout).toContain(`Discord user ${USER_B}`);
    expect(show.stdout).toContain(idB);
    expect(show.stdout).toContain('pro');
    expect(show.stdout).toContain('gpt-4o-mini'); // today's usage row

    const data = json<{
      user: { discordId: string };
      keys: Array<Record<string, unknown>>;
      usage: unknown[];
      note: string;
    }>(exp);
    expect(data.user.discordId).toBe(USER_B);
    expect(data.keys.map((k) => k.id)).toEqual([idB]);
    expect(Object.keys(data.keys[0]!)).not.toContain('hash');
    expect(data.usage).toHaveLength(3);
    expect(exp.stdout).not.toMatch(/[0-9a-f]{64}/);
  });

  it('users delete needs --yes, then removes the user, keys and usage and writes an audit entry', async () => {
    const unconfirmed = await cli(['users', 'delete', USER_B]);
    expect(unconfirmed.code).toBe(2);
    expect(unconfirmed.stderr).toContain('--yes');
    expect(await withStore((s) => s.getUser(USER_B))).not.toBeNull();

    const out = json<{ ok: boolean; keys: number; usageRecords: number }>(
      await cli(['users', 'delete', USER_B, '--yes', '--json']),
    );
    expect(out).toEqual({ ok: true, keys: 1, usageRecords: 3 });
    await withStore(async (s) => {
      expect(await s.getUser(USER_B)).toBeNull();
      expect(await s.getKeyById(idB)).toBeNull();
      expect(await s.listUsage(USER_B, 10)).toEqual([]);
      const audit = await s.listAudit({ target: USER_B, limit: 10 });
      expect(audit.map((a) => a.action)).toContain('user.delete');
      // User A is untouched.
      expect(await s.listUsage(USER_A, 10)).toHaveLength(2);
    });
  });

  it('config check: exit 0 on a good config, exit 2 listing every bad field; unknown command exits 2', async () => {
    const bad = join(dir, 'bad.yaml');
    writeFileSync(
      bad,
      [
        'server: { port: 99999 }',
        'storage: { store: mysql }',
        'defaultTier: gold',
        'tiers:',
        '  free: { rpm: -1, tokensPerDay: 10 }',
        'models:',
        '  m: { routes: [{ upstream: nowhere, model: m }] }',
        '',
      ].join('\n'),
    );
    const [good, invalid, unknown] = await Promise.all([
      cli(['config', 'check']),
      cli(['config', 'check'], bad),
      cli(['frobnicate']),
    ]);
    expect(good.code, good.stderr).toBe(0);
    expect(good.stdout).toContain('Config OK');
    expect(good.stdout).toContain(goodConfig);

    expect(invalid.code).toBe(2);
    for (const field of [
      'server.port',
      'storage.store',
      'defaultTier',
      'tiers.free.rpm',
      'models.m.routes.0.upstream',
    ]) {
      expect(invalid.stderr, field).toContain(`${field}:`);
    }
    expect(invalid.stderr).toContain(bad);
    expect(invalid.stdout).toBe('');

    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('frobnicate');
  });

  it('no output ever contains a key hash, nor a raw key outside the line that issued it', () => {
    expect(printedKeys).toHaveLength(3);
    expect(runs.length).toBeLessThanOrEqual(25);
    for (const run of runs) {
      const text = run.stdout + run.stderr;
      for (const { key, run: printer } of printedKeys) {
        expect(text, `${run.args.join(' ')} shows a key hash`).not.toContain(hashKey(key));
        if (run !== printer) expect(text, `${run.args.join(' ')} shows a raw key`).not.toContain(key);
      }
      expect(text, run.args.join(' ')).not.toMatch(/\b[0-9a-f]{64}\b/);
    }
  });
});
