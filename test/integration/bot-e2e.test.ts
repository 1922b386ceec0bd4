// The Discord bot end to end: the real bot (startBot with an unmodified discord.js Client) against the
// fake Discord, sharing Services with a real relay in front of the fake OpenAI upstream. Keys handed
// out by `/key create` are used with the official `openai` client; moderation, leaving, bans, a
// restart and a gateway resume must each take a key's access away within their bound.
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { type RunningBot, startBot } from '../../bot/index.js';
import { issueKey } from '../../src/app/keys.js';
import { findKeysInText } from '../../src/domain/keys.js';
import { type FakeDiscord, startFakeDiscord } from '../fakes/discord.js';
import { type FakeUpstream, startFakeUpstream } from '../fakes/openai-upstream.js';
import { startTestRelay, type TestRelay } from '../helpers/relay.js';

const KEY_REVEAL_MS = 1_500;
const DAY_MS = 86_400_000;

let fake: FakeDiscord;
let upstream: FakeUpstream;
let t: TestRelay;
let bot: RunningBot | null = null;
let dataDir: string;
let moderatorId: string;
/** Every key the bot handed out, for the leak scan at the end. */
const issued: string[] = [];
const figures: Record<string, number> = {};

function record(name: string, ms: number): number {
  figures[name] = ms;
  console.log(`[bot-e2e] ${name}: ${ms} ms`);
  return ms;
}

const start = () => startBot(t.relay.services, { log: t.relay.services.log });

/** A member old enough for the gates, holding the required role (plus `roles`). */
function newMember(roles: string[] = []): string {
  return fake.addMember({ user: { createdAt: Date.now() - 30 * DAY_MS }, roles: [fake.roleIds.member, ...roles] }).user
    .id;
}

/** Runs `/key create` as `userId` and returns the key shown in the reply. */
async function createKey(userId: string) {
  const started = Date.now();
  const i = fake.interact({ type: 'chat-input', name: 'key', subcommand: 'create', userId });
  const first = await i.response();
  const [edit] = await i.edits(1);
  const [key] = findKeysInText(edit?.content ?? '');
  if (!key) throw new Error(`no key in the reply: ${edit?.content}`);
  issued.push(key);
  return { key, first, interaction: i, ms: Date.now() - started };
}

async function status(key: string): Promise<number> {
  try {
    await t.client(key).models.list();
    return 200;
  } catch (err) {
    if (err instanceof OpenAI.APIError && err.status) return err.status;
    throw err;
  }
}

async function until(check: () => Promise<boolean>, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await sleep(20);
  }
}

/** Polls the relay until `key` is refused; how long that took from `since`. */
async function msUntilRefused(key: string, since: number, timeoutMs: number): Promise<number> {
  for (;;) {
    const code = await status(key);
    const elapsed = Date.now() - since;
    if (code === 401) return elapsed;
    if (elapsed > timeoutMs) throw new Error(`key still answered ${code} after ${elapsed} ms`);
    await sleep(20);
  }
}

describe('the bot against the fake Discord', () => {
  beforeAll(async () => {
    fake = await startFakeDiscord();
    upstream = await startFakeUpstream();
    dataDir = mkdtempSync(join(tmpdir(), 'gg-bot-e2e-'));
    t = await startTestRelay({
      upstreams: { fake: upstream.url },
      dataDir,
      config: {
        gates: { requiredRoleIds: [fake.roleIds.member] },
        discord: {
          applicationId: fake.applicationId,
          guildId: fake.guildId,
          moderatorRoleIds: [fake.roleIds.moderator],
          modLogChannelId: fake.modLogChannelId,
          apiBaseUrl: `${fake.url}/api`,
          keyRevealMs: KEY_REVEAL_MS,
        },
      },
      env: { DISCORD_BOT_TOKEN: fake.token },
    });
    moderatorId = newMember([fake.roleIds.moderator]);
    bot = await start();
  });

  afterAll(async () => {
    await bot?.stop();
    await t?.stop();
    await upstream?.close();
    await fake?.close();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
    console.log(`[bot-e2e] figures ${JSON.stringify(figures)}`);
  });

  it('registers its commands once: an unchanged set is not registered again', async () => {
    expect(fake.commandPuts).toHaveLength(1);
    expect(fake.commands.guild.map((c) => c.name)).toEqual(expect.arrayContaining(['key', 'mod', 'Revoke key']));
    await bot?.stop();
    bot = await start();
    expect(fake.commandPuts).toHaveLength(1);
  });

  it('/key create: deferred ephemerally at once, the key works with the openai client, then leaves the reply', async () => {
    const userId = newMember();
    const { key, first, interaction, ms } = await createKey(userId);
    expect(first).toMatchObject({ type: 5, ephemeral: true });
    record('key create: deferral after dispatch', first.delayMs);
    record('key create: dispatch to key shown', ms);
    expect(first.delayMs).toBeLessThan(3_000);

    const chat = await t.client(key).chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'hello guild' }],
    });
    expect(chat.choices[0]?.message.content).toBeTruthy();

    const [, redacted] = await interaction.edits(2, KEY_REVEAL_MS + 5_000);
    expect(redacted?.content).not.toContain(key);
    expect(redacted?.content).toContain('removed from this message');
    expect(interaction.record.ephemeral).toBe(true);
  });

  it('/mod revoke by a moderator: the key is refused within 1 s', async () => {
    const userId = newMember();
    const { key } = await createKey(userId);
    expect(await status(key)).toBe(200);
    const since = Date.now();
    const i = fake.interact({
      type: 'chat-input',
      name: 'mod',
      subcommand: 'revoke',
      userId: moderatorId,
      options: { user: userId, reason: 'sharing the key' },
    });
    expect(await i.response()).toMatchObject({ type: 5, ephemeral: true });
    expect(record('mod revoke: to 401', await msUntilRefused(key, since, 1_000))).toBeLessThanOrEqual(1_000);
    const [edit] = await i.edits(1);
    expect(edit?.content).toContain(`<@${userId}>`);
  });

  it('a member who leaves: the key is refused within 5 s', async () => {
    const userId = newMember();
    const { key } = await createKey(userId);
    const since = Date.now();
    fake.removeMember(userId);
    expect(record('leave: to 401', await msUntilRefused(key, since, 5_000))).toBeLessThanOrEqual(5_000);
    expect(await t.relay.services.store.listKeys({ discordId: userId })).toMatchObject([{ status: 'suspended' }]);
  });

  it('a ban alone (the user is not a member, no member-remove event): the key is refused within 5 s', async () => {
    // An operator issued this key from the CLI to someone outside the server.
    const user = fake.createUser({ createdAt: Date.now() - 30 * DAY_MS });
    const r = await issueKey(t.relay.services.keys, { discordId: user.id, actor: 'cli' });
    if (!r.ok) throw new Error(r.message);
    issued.push(r.key);
    const since = Date.now();
    fake.banUser(user.id);
    expect(record('ban alone: to 401', await msUntilRefused(r.key, since, 5_000))).toBeLessThanOrEqual(5_000);
    expect(await t.relay.services.store.getUser(user.id)).toMatchObject({ bannedAt: expect.any(Date) });
  });

  it('a banned member (remove and ban in either order): key revoked and relay ban set', async () => {
    for (const order of ['remove-first', 'ban-first'] as const) {
      const userId = newMember();
      const { key } = await createKey(userId);
      const since = Date.now();
      fake.banUser(userId, { order });
      expect(record(`ban ${order}: to 401`, await msUntilRefused(key, since, 5_000))).toBeLessThanOrEqual(5_000);
      await until(async () => (await t.relay.services.store.listKeys({ discordId: userId }))[0]?.status === 'revoked');
      expect(await t.relay.services.store.getUser(userId)).toMatchObject({ bannedAt: expect.any(Date) });
    }
  });

  it('a member removed while the bot was stopped: refused within 10 s of the restart', async () => {
    const userId = newMember();
    const { key } = await createKey(userId);
    await bot?.stop();
    bot = null;
    fake.removeMember(userId);
    expect(await status(key)).toBe(200);
    const since = Date.now();
    bot = await start();
    record('restart: bot ready', Date.now() - since);
    expect(record('restart: to 401', await msUntilRefused(key, since, 10_000))).toBeLessThanOrEqual(10_000);
  });

  it('gateway close 4000: the session resumes, a leave sent during the gap is replayed and applied, commands work', async () => {
    const leaver = newMember();
    const { key: leaverKey } = await createKey(leaver);
    const resumes = fake.resumeCount;
    const since = Date.now();
    fake.closeGateway(4000);
    fake.removeMember(leaver);
    await fake.waitFor(() => fake.resumeCount > resumes, 10_000, 'a resume');
    record('close 4000: to resumed', Date.now() - since);
    expect(record('leave during the gap: to 401', await msUntilRefused(leaverKey, since, 5_000))).toBeLessThanOrEqual(
      5_000,
    );

    const { key, first } = await createKey(newMember());
    expect(first).toMatchObject({ type: 5, ephemeral: true });
    expect(await status(key)).toBe(200);
  });

  it('/privacy export attaches a file; /privacy delete asks, and its button deletes in the same ephemeral message', async () => {
    const userId = newMember();
    const { key } = await createKey(userId);
    const exported = fake.interact({ type: 'chat-input', name: 'privacy', subcommand: 'export', userId });
    const [withFile] = await exported.edits(1);
    expect(withFile?.files.map((f) => f.name)).toEqual([`guildgate-export-${userId}.json`]);
    expect(withFile?.files[0]?.text).not.toContain(key);

    const asked = fake.interact({ type: 'chat-input', name: 'privacy', subcommand: 'delete', userId });
    expect(await asked.response()).toMatchObject({ type: 5, ephemeral: true });
    const [question] = await asked.edits(1);
    expect(JSON.stringify(question?.components)).toContain('privacy-delete-confirm');
    const press = fake.interact({ type: 'button', customId: 'privacy-delete-confirm', userId });
    expect(await press.response()).toMatchObject({ type: 6 });
    const [done] = await press.edits(1);
    expect(done?.components).toEqual([]);
    expect(await status(key)).toBe(401);
    expect(await t.relay.services.store.getUser(userId)).toBeNull();
  });

  it('a command that fails inside answers with a request id, never the error text', async () => {
    const userId = newMember();
    const store = t.relay.services.store;
    vi.spyOn(store, 'listKeys').mockRejectedValueOnce(new Error('database on fire at /srv/secret/path'));
    const i = fake.interact({ type: 'chat-input', name: 'key', subcommand: 'show', userId });
    expect(await i.response()).toMatchObject({ type: 5, ephemeral: true });
    const [edit] = await i.edits(1);
    vi.restoreAllMocks();
    expect(edit?.content).toMatch(/^Something went wrong on our side \(request id req_[\w-]+\)\. Try again shortly\.$/);
    expect(edit?.content).not.toContain('on fire');
    const requestId = /req_[\w-]+/.exec(edit?.content ?? '')?.[0];
    expect(t.logs.some((l) => l.includes(requestId!) && l.includes('command failed'))).toBe(true);
  });

  it('after stopping bot and relay, no key and no bot token is in any log line or data file', async () => {
    await bot?.stop();
    bot = null;
    await t.stop();
    const logs = t.logs.join('\n');
    expect(logs).toContain('discord bot ready');
    const files = readdirSync(dataDir).map((f) => readFileSync(join(dataDir, f)));
    expect(files.length).toBeGreaterThan(0);
    expect(issued.length).toBeGreaterThan(5);
    for (const secret of [...issued, fake.token]) {
      expect(logs.includes(secret), 'a secret in the logs').toBe(false);
      for (const bytes of files) expect(bytes.includes(Buffer.from(secret)), 'a secret in a data file').toBe(false);
    }
    // The mod log names members, never a key.
    const modLog = (fake.messages.get(fake.modLogChannelId) ?? []).map((m) => m.content).join('\n');
    expect(modLog).toContain('left the server');
    expect(findKeysInText(modLog)).toEqual([]);
  });
});

describe('the process entries: `npm start` (relay + bot) and `npm run bot -- register`', () => {
  const REPO = resolve(import.meta.dirname, '../..');
  const TSX = pathToFileURL(join(REPO, 'node_modules/tsx/dist/loader.mjs')).href;
  let discord: FakeDiscord;
  let provider: FakeUpstream;
  let dir: string;
  let env: NodeJS.ProcessEnv;
  let child: ChildProcess | null = null;

  const spawnEntry = (entry: string, args: string[] = []) =>
    spawn(process.execPath, ['--import', TSX, join(REPO, entry), ...args], { cwd: dir, env });

  beforeAll(async () => {
    discord = await startFakeDiscord();
    provider = await startFakeUpstream();
    dir = mkdtempSync(join(tmpdir(), 'gg-serve-'));
    const config = {
      server: { host: '127.0.0.1', port: 0 },
      dataDir: './data',
      storage: { store: 'sqlite', limits: 'memory' },
      gates: { requiredRoleIds: [discord.roleIds.member] },
      upstreams: { fake: { baseUrl: provider.url } },
      models: { 'gpt-4o-mini': { routes: [{ upstream: 'fake', model: 'gpt-4o-mini' }] } },
      discord: { applicationId: discord.applicationId, guildId: discord.guildId, apiBaseUrl: `${discord.url}/api` },
    };
    writeFileSync(join(dir, 'guildgate.json'), JSON.stringify(config));
    env = { ...process.env, DISCORD_BOT_TOKEN: discord.token, LOG_LEVEL: 'info' };
    for (const name of ['MONGODB_URI', 'REDIS_URL', 'GUILDGATE_CONFIG', 'GUILDGATE_HOST', 'GUILDGATE_PORT']) {
      delete env[name];
    }
  });

  afterAll(async () => {
    child?.kill('SIGKILL');
    await provider?.close();
    await discord?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('hands out working keys from /key create and stops cleanly on SIGTERM, the shown key redacted', async () => {
    const started = Date.now();
    const proc = spawnEntry('bot/serve.ts');
    child = proc;
    let output = '';
    proc.stdout.on('data', (d: Buffer) => {
      output += d.toString();
    });
    proc.stderr.on('data', (d: Buffer) => {
      output += d.toString();
    });
    const logLine = (msg: string) =>
      output
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as { msg: string; url?: string })
        .find((l) => l.msg === msg);
    await until(async () => Boolean(logLine('discord bot ready')), 30_000).catch(() => {
      throw new Error(`the bot did not start:\n${output}`);
    });
    record('npm start: spawn to bot ready', Date.now() - started);
    const url = logLine('guildgate relay listening')?.url;

    const userId = discord.addMember({ user: { createdAt: Date.now() - 30 * DAY_MS }, roles: [discord.roleIds.member] })
      .user.id;
    const i = discord.interact({ type: 'chat-input', name: 'key', subcommand: 'create', userId });
    expect(await i.response()).toMatchObject({ type: 5, ephemeral: true });
    const [shown] = await i.edits(1);
    const [key] = findKeysInText(shown?.content ?? '');
    if (!key) throw new Error(`no key in the reply: ${shown?.content}`);
    const client = new OpenAI({ apiKey: key, baseURL: `${url}/v1`, maxRetries: 0 });
    const chat = await client.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'hi' }],
    });
    expect(chat.choices[0]?.message.content).toBeTruthy();

    const exited = new Promise<number | null>((done) => proc.once('exit', (code) => done(code)));
    proc.kill('SIGTERM');
    expect(await exited).toBe(0);
    child = null;
    // The reveal window (3 minutes by default) was cut short by the shutdown.
    expect(i.record.edits).toHaveLength(2);
    expect(i.record.edits.at(-1)?.content).not.toContain(key);
    expect(output).not.toContain(key);
    expect(output).not.toContain(discord.token);
    const dataDir = join(dir, 'data');
    for (const f of readdirSync(dataDir)) {
      const bytes = readFileSync(join(dataDir, f));
      expect(bytes.includes(Buffer.from(key)) || bytes.includes(Buffer.from(discord.token)), f).toBe(false);
    }
  });

  it("`npm run bot -- register` replaces the server's commands and exits", async () => {
    const puts = discord.commandPuts.length;
    const proc = spawnEntry('bot/main.ts', ['register']);
    let out = '';
    proc.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    const [code] = (await once(proc, 'exit')) as [number | null];
    expect(code).toBe(0);
    expect(out).toMatch(/^Registered \d+ commands in server \d+\.\n$/);
    expect(discord.commandPuts).toHaveLength(puts + 1);
  });
});
