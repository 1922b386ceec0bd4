// Member slash commands on real use cases, a real SQLite store and in-process limits. Discord itself
// cannot run here, so the directory port is a small in-memory stand-in that records what was sent.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { commandDefinitions, components, handlers } from '../../bot/commands/index.js';
import { type BotDeps, type Invoker, UserError } from '../../bot/types.js';
import { admit as admitRequest, settle } from '../../src/app/admission.js';
import { suspendKey } from '../../src/app/keys.js';
import { usageSummary } from '../../src/app/usage-summary.js';
import { buildConfig } from '../../src/config/load.js';
import { buildServices } from '../../src/container.js';
import { budgetDay, shiftDay } from '../../src/domain/budget-day.js';
import type { KeyRecord } from '../../src/domain/types.js';
import { createLogger } from '../../src/logger.js';
import type { Services } from '../../src/services.js';
import { discordIdAged, InMemoryDirectory } from '../helpers/discord-directory.js';
import { usageRecord } from '../helpers/usage.js';

const DAY = 86_400_000;
const GUILD = '100000000000000001';
const OTHER_GUILD = '100000000000000009';
const ROLE_MEMBER = '200000000000000001';
const ROLE_PRO = '200000000000000002';
const ROLE_TEAM = '200000000000000003';
const BASE = 'https://relay.example.org';

let dir: string;
let services: Services;
let discord: InMemoryDirectory;
let deps: BotDeps;

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'gg-bot-'));
  const raw = {
    dataDir: dir,
    server: { publicBaseUrl: BASE },
    storage: { store: 'sqlite', limits: 'memory' },
    gates: { requiredRoleIds: [ROLE_MEMBER], minAccountAgeDays: 30, minMemberDays: 3, requireScreening: true },
    defaultTier: 'free',
    tiers: {
      free: { rpm: 20, tokensPerDay: 10_000, models: ['gpt-4o-mini', 'text-embedding-3-small'] },
      pro: { rpm: 100, tokensPerDay: 500_000 },
      team: { rpm: 300, tokensPerDay: 2_000_000 },
    },
    upstreams: { up: { baseUrl: 'http://127.0.0.1:9/v1' } },
    models: {
      'gpt-4o-mini': { routes: [{ upstream: 'up', model: 'gpt-4o-mini' }] },
      'gpt-4o': { routes: [{ upstream: 'up', model: 'gpt-4o' }] },
      'text-embedding-3-small': { kind: 'embedding', routes: [{ upstream: 'up', model: 'text-embedding-3-small' }] },
    },
    // Config order decides between roles, not the order the member holds them in.
    discord: {
      applicationId: '100000000000000002',
      guildId: GUILD,
      roleTiers: { [ROLE_TEAM]: 'team', [ROLE_PRO]: 'pro' },
    },
  };
  services = await buildServices(buildConfig(raw, {}, 'test'), { log: createLogger('silent') });
  discord = new InMemoryDirectory([ROLE_MEMBER]);
  deps = { services, discord, config: services.config.discord! };
});

afterEach(async () => {
  await services.close();
  rmSync(dir, { recursive: true, force: true });
});

const inGuild = (userId: string, roleIds: string[] = [ROLE_MEMBER]): Invoker => ({
  userId,
  guildId: GUILD,
  permissions: 0n,
  roleIds,
});

function run(path: string, invoker: Invoker, opts: Record<string, string> = {}) {
  const handler = handlers.get(path);
  if (!handler) throw new Error(`no handler for ${path}`);
  return handler(deps, invoker, opts);
}

/** Runs /key create and returns the key shown. */
async function create(userId: string): Promise<{ key: string; content: string; redacted: string }> {
  const reply = await run('key create', inGuild(userId));
  if (reply.kind !== 'key') throw new Error(`expected a key reply, got ${reply.kind}`);
  const key = reply.content.match(/gg_[1-9A-HJ-NP-Za-km-z]{20,60}/)?.[0];
  if (!key) throw new Error('no key in the reply');
  return { key, content: reply.content, redacted: reply.redacted };
}

async function liveKeys(userId: string): Promise<KeyRecord[]> {
  return (await services.store.listKeys({ discordId: userId })).filter((k) => k.status !== 'revoked');
}

describe('/key create', () => {
  it('refuses a DM or another server, before asking Discord anything', async () => {
    const id = discord.join(discordIdAged());
    await expect(run('key create', { ...inGuild(id), guildId: null })).rejects.toThrow(/not in a direct message/);
    await expect(run('key create', { ...inGuild(id), guildId: OTHER_GUILD })).rejects.toThrow(UserError);
    expect(await liveKeys(id)).toHaveLength(0);
  });

  it.each([
    ['not a member', () => discordIdAged(), /must be a member of the Discord server/],
    ['screening pending', () => discord.join(discordIdAged(), { pending: true }), /membership screening/],
    ['missing role', () => discord.join(discordIdAged(), { roleIds: [] }), new RegExp(`<@&${ROLE_MEMBER}>`)],
    ['account too new', () => discord.join(discordIdAged(2)), /at least 30 days old\. Try again in 28 days/],
    [
      'member too new',
      () => discord.join(discordIdAged(), { joinedAt: new Date(Date.now() - DAY) }),
      /in the server for 3 days\. Try again in 2 days/,
    ],
  ])('names the failed gate: %s', async (_name, member, message) => {
    const id = member();
    await expect(run('key create', inGuild(id, [ROLE_MEMBER]))).rejects.toThrow(message);
    expect(await services.store.listKeys({ discordId: id })).toHaveLength(0);
  });

  it('takes membership from Discord, not from the interaction', async () => {
    const id = discord.join(discordIdAged(), { roleIds: [] });
    // The interaction claims the role; the REST member says otherwise.
    await expect(run('key create', inGuild(id, [ROLE_MEMBER]))).rejects.toThrow(/You need the role/);
  });

  it('shows a working key once, with a quick start; the redacted text keeps only its prefix', async () => {
    const id = discord.join(discordIdAged());
    const { key, content, redacted } = await create(id);
    expect(content.split(key)).toHaveLength(2);
    expect(content.length).toBeLessThanOrEqual(2000);
    expect(content).toContain(`${BASE}/v1`);
    expect(content).toContain(`curl ${BASE}/v1/chat/completions`);
    expect(content).toContain('from openai import OpenAI');
    expect(content).toContain('"model":"gpt-4o-mini"');
    expect(redacted).not.toContain(key);
    expect(redacted).toContain(`${key.slice(0, 9)}…`);
    expect(redacted).toContain('/key rotate');
    expect(redacted.length).toBeLessThanOrEqual(2000);

    const verified = await services.verifier.verify(key);
    expect(verified).toMatchObject({ ok: true, key: { discordId: id, tier: 'free' } });
    const [issued] = await services.store.listAudit({ target: verified.ok ? verified.key.id : '', limit: 5 });
    expect(issued).toMatchObject({ action: 'key.issue', actor: `discord:${id}` });
  });

  it('maps roles to tiers in config order, else the default tier', async () => {
    const both = discord.join(discordIdAged(), { roleIds: [ROLE_MEMBER, ROLE_PRO, ROLE_TEAM] });
    const pro = discord.join(discordIdAged(), { roleIds: [ROLE_MEMBER, ROLE_PRO] });
    const plain = discord.join(discordIdAged());
    for (const [id, tier] of [
      [both, 'team'],
      [pro, 'pro'],
      [plain, 'free'],
    ] as const) {
      const { key } = await create(id);
      expect(await services.verifier.verify(key)).toMatchObject({ ok: true, key: { tier } });
    }
  });

  it('gives one key per member; a second create says to rotate', async () => {
    const id = discord.join(discordIdAged());
    const { key } = await create(id);
    const err = await run('key create', inGuild(id)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UserError);
    expect((err as Error).message).toContain(`\`${key.slice(0, 9)}…\``);
    expect((err as Error).message).toContain('/key rotate');
    expect((err as Error).message).not.toContain(key);
    expect(await liveKeys(id)).toHaveLength(1);
  });
});

describe('/key show, rotate, revoke', () => {
  it('shows prefix, tier, status and creation time, or how to get a key', async () => {
    const id = discord.join(discordIdAged(), { roleIds: [ROLE_MEMBER, ROLE_PRO] });
    expect(await run('key show', inGuild(id))).toEqual({
      kind: 'text',
      content: 'You have no key. Use `/key create` to get one.',
    });
    const { key } = await create(id);
    const reply = await run('key show', inGuild(id));
    expect(reply.kind).toBe('text');
    const text = reply.kind === 'text' ? reply.content : '';
    expect(text).toContain(`\`${key.slice(0, 9)}…\``);
    expect(text).toContain('**pro**');
    expect(text).toContain('Status: active');
    expect(text).toMatch(/Created: <t:\d+:R>/);
    expect(text).not.toContain(key);
  });

  it('rotate kills the old key at once and shows the new one', async () => {
    const id = discord.join(discordIdAged());
    const old = await create(id);
    expect((await services.verifier.verify(old.key)).ok).toBe(true); // now cached
    const reply = await run('key rotate', inGuild(id));
    if (reply.kind !== 'key') throw new Error('expected a key reply');
    const fresh = reply.content.match(/gg_[1-9A-HJ-NP-Za-km-z]{20,60}/)?.[0] ?? '';
    expect(fresh).not.toBe(old.key);
    expect(reply.content).toContain(`old key \`${old.key.slice(0, 9)}…\` stopped working`);
    expect(reply.redacted).not.toContain(fresh);
    expect(await services.verifier.verify(old.key)).toMatchObject({ ok: false, code: 'REVOKED' });
    expect(await services.verifier.verify(fresh)).toMatchObject({ ok: true, key: { discordId: id } });
  });

  it('revoke by the member ends the key; a suspended key can be neither rotated nor revoked', async () => {
    const id = discord.join(discordIdAged());
    await expect(run('key revoke', inGuild(id))).rejects.toThrow(/no key to revoke/);
    await expect(run('key rotate', inGuild(id))).rejects.toThrow(/no key to rotate/);
    const { key } = await create(id);
    const reply = await run('key revoke', inGuild(id));
    expect(reply).toMatchObject({ kind: 'text', content: expect.stringContaining('is revoked') });
    expect(await services.verifier.verify(key)).toMatchObject({ ok: false, code: 'REVOKED' });
    const [entry] = await services.store.listAudit({
      target: (await services.store.listKeys({ discordId: id }))[0]!.id,
      limit: 1,
    });
    expect(entry).toMatchObject({ action: 'key.revoke', actor: `discord:${id}` });

    const second = await create(id);
    const [live] = await liveKeys(id);
    await suspendKey(services.keys, { keyId: live!.id, actor: 'cli', reason: 'abuse' });
    await expect(run('key rotate', inGuild(id))).rejects.toThrow(/suspended \(abuse\)/);
    await expect(run('key revoke', inGuild(id))).rejects.toThrow(/suspended/);
    await expect(run('key create', inGuild(id))).rejects.toThrow(/suspended/);
    expect(await services.verifier.verify(second.key)).toMatchObject({ ok: false, code: 'SUSPENDED' });
    expect(await liveKeys(id)).toHaveLength(1);
  });
});

describe('/usage', () => {
  it('reports the budget ledger exactly: settled plus still reserved tokens', async () => {
    const id = discord.join(discordIdAged());
    const { key } = await create(id);
    const v = await services.verifier.verify(key);
    if (!v.ok) throw new Error(v.code);
    const tier = services.config.tiers.free!;
    const admit = async (requestId: string) =>
      admitRequest(
        services.limits,
        { requestId, key: v.key, tier },
        {
          model: 'gpt-4o-mini',
          weight: 1,
          promptTokens: 100,
          requestedMaxTokens: 50,
          completions: 1,
        },
      );
    const done = await admit('req_one');
    await settle(services.limits, done, { promptTokens: 90, completionTokens: 30 }); // 120 charged
    const pending = await admit('req_two'); // 150 reserved

    const now = services.now();
    const today = budgetDay(now, 'UTC');
    const yesterday = shiftDay(today, -1);
    await services.store.insertUsage(
      [
        usageRecord({ discordId: id, chargedTokens: 700, createdAt: new Date(now.getTime() - DAY) }),
        usageRecord({ discordId: id, chargedTokens: 55, createdAt: new Date(now.getTime() - DAY) }),
      ],
      (r) => budgetDay(r.createdAt, 'UTC'),
    );

    const s = await usageSummary(services, id, now);
    expect(s).toMatchObject({ day: today, tier: 'free', used: 270, budget: 10_000, rpm: 20 });
    expect(s.resetAt.getTime()).toBe(services.limits.calendar.at(now).resetAt);
    expect(s.last7Days).toHaveLength(7);
    expect(s.last7Days.at(-1)?.day).toBe(today);
    expect(s.last7Days.at(-2)).toEqual({ day: yesterday, requests: 2, chargedTokens: 755 });

    const reply = await run('usage', inGuild(id));
    const text = reply.kind === 'text' ? reply.content : '';
    expect(text).toContain('270 / 10,000 tokens (2.7%)');
    expect(text).toMatch(/resets <t:\d+:R>/);
    expect(text).toContain('20 requests/min');
    expect(text).toContain(`\`${yesterday}\` 2 requests, 755 tokens`);
    await settle(services.limits, pending, { promptTokens: 100, completionTokens: 0 });
  });

  it("uses the live key's tier, else the default tier", async () => {
    const id = discord.join(discordIdAged(), { roleIds: [ROLE_MEMBER, ROLE_PRO] });
    expect(await usageSummary(services, id, services.now())).toMatchObject({ used: 0, tier: 'free', budget: 10_000 });
    await create(id);
    expect(await usageSummary(services, id, services.now())).toMatchObject({ tier: 'pro', budget: 500_000, rpm: 100 });
  });
});

describe('/models', () => {
  it("lists only what the member's tier allows, by kind", async () => {
    const free = discord.join(discordIdAged());
    await create(free);
    const text = async (id: string, roles?: string[]) => {
      const r = await run('models', inGuild(id, roles));
      return r.kind === 'text' ? r.content : '';
    };
    const freeText = await text(free);
    expect(freeText).toContain('**free**');
    expect(freeText).toContain('**Chat:** `gpt-4o-mini`\n');
    expect(freeText).toContain('**Embeddings:** `text-embedding-3-small`');
    expect(freeText).not.toContain('`gpt-4o`');
    // No key yet: the tier the member's roles would give.
    const pro = discord.join(discordIdAged());
    const proText = await text(pro, [ROLE_MEMBER, ROLE_PRO]);
    expect(proText).toContain('**pro** may call (the tier a new key would get)');
    expect(proText).toContain('`gpt-4o`');
  });
});

describe('/privacy', () => {
  it('exports valid JSON without key hashes or keys', async () => {
    const id = discord.join(discordIdAged());
    expect(await run('privacy export', inGuild(id))).toMatchObject({ kind: 'text' });
    const { key } = await create(id);
    const [record] = await liveKeys(id);
    const reply = await run('privacy export', inGuild(id));
    if (reply.kind !== 'file') throw new Error('expected a file');
    expect(reply.file.name).toBe(`guildgate-export-${id}.json`);
    const text = reply.file.data.toString('utf8');
    const parsed = JSON.parse(text);
    expect(parsed.user.discordId).toBe(id);
    expect(parsed.keys).toHaveLength(1);
    expect(parsed.keys[0]).not.toHaveProperty('hash');
    expect(text).not.toContain(record!.hash);
    expect(text).not.toContain(key);
  });

  it('deletes everything after the confirm button, and the key stops working', async () => {
    const id = discord.join(discordIdAged());
    const { key } = await create(id);
    const question = await run('privacy delete', inGuild(id));
    expect(question).toMatchObject({ kind: 'confirm', customId: 'privacy-delete-confirm', label: 'Delete my data' });
    // Nothing happens until the button is pressed.
    expect(await services.store.getUser(id)).not.toBeNull();
    const confirm = components.get('privacy-delete-confirm');
    const done = await confirm!(deps, inGuild(id));
    expect(done).toMatchObject({ kind: 'text', content: expect.stringContaining('1 keys') });
    expect(await services.store.getUser(id)).toBeNull();
    expect(await services.store.listKeys({ discordId: id })).toHaveLength(0);
    expect(await services.verifier.verify(key)).toMatchObject({ ok: false, code: 'UNKNOWN' });
    expect((await services.store.listAudit({ target: id, limit: 5 }))[0]).toMatchObject({
      action: 'user.delete',
      actor: `discord:${id}`,
    });
    expect(await confirm!(deps, inGuild(id))).toMatchObject({
      kind: 'text',
      content: expect.stringContaining('nothing'),
    });
  });

  it('will not delete the record of a ban (deleting would lift it)', async () => {
    const id = discord.join(discordIdAged());
    await services.store.ensureUser(id, new Date());
    await services.store.setUserBan(id, { at: new Date(), reason: 'spam' });
    await expect(run('privacy delete', inGuild(id))).rejects.toThrow(/banned/);
    await expect(components.get('privacy-delete-confirm')!(deps, inGuild(id))).rejects.toThrow(/banned/);
    expect((await services.store.getUser(id))?.bannedAt).not.toBeNull();
  });
});

describe('registry', () => {
  it('defines guild-only commands and a handler for each command path', () => {
    const defs = commandDefinitions(['free', 'pro', 'team']);
    expect(defs.every((d) => JSON.stringify(d.contexts) === '[0]')).toBe(true);
    const paths = defs.flatMap((d) => {
      const subs = 'options' in d ? (d.options ?? []).filter((o) => o.type === 1) : [];
      return subs.length ? subs.map((s) => `${d.name} ${s.name}`) : [d.name];
    });
    expect(paths.sort()).toEqual([...handlers.keys()].sort());
    for (const name of ['key', 'usage', 'models', 'privacy']) {
      expect(defs.find((d) => d.name === name)?.default_member_permissions).toBeUndefined();
    }
  });
});
