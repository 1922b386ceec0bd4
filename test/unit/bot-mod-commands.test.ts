// Moderator commands on real use cases and a real SQLite store. The Discord directory is an
// in-memory stand-in recording DMs and mod-log posts, with members whose DMs can be closed.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { commandDefinitions, handlers } from '../../bot/commands/index.js';
import { modBan, modKey, modLookup, modStats } from '../../bot/commands/mod.js';
import { type BotDeps, type Invoker, UserError } from '../../bot/types.js';
import { issueKey } from '../../src/app/keys.js';
import { buildConfig } from '../../src/config/load.js';
import { buildServices } from '../../src/container.js';
import { budgetDay } from '../../src/domain/budget-day.js';
import { createLogger } from '../../src/logger.js';
import type { Services } from '../../src/services.js';
import { discordIdAged, InMemoryDirectory } from '../helpers/discord-directory.js';
import { usageRecord } from '../helpers/usage.js';

const GUILD = '100000000000000001';
const ROLE_MEMBER = '200000000000000001';
const ROLE_MOD = '200000000000000005';
const MOD = '300000000000000001';

let dir: string;
let services: Services;
let discord: InMemoryDirectory;
let deps: BotDeps;

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'gg-bot-mod-'));
  const raw = {
    dataDir: dir,
    storage: { store: 'sqlite', limits: 'memory' },
    gates: { requiredRoleIds: [ROLE_MEMBER], minAccountAgeDays: 7 },
    defaultTier: 'free',
    tiers: { free: { rpm: 20, tokensPerDay: 10_000 }, pro: { rpm: 100, tokensPerDay: 500_000 } },
    discord: { applicationId: '100000000000000002', guildId: GUILD, moderatorRoleIds: [ROLE_MOD] },
  };
  services = await buildServices(buildConfig(raw, {}, 'test'), { log: createLogger('silent') });
  discord = new InMemoryDirectory([ROLE_MEMBER]);
  deps = { services, discord, config: services.config.discord! };
});

afterEach(async () => {
  await services.close();
  rmSync(dir, { recursive: true, force: true });
});

const MANAGE_GUILD = 0x20n;
const ADMINISTRATOR = 0x8n;
const mod = (o: Partial<Invoker> = {}): Invoker => ({
  userId: MOD,
  guildId: GUILD,
  permissions: MANAGE_GUILD,
  roleIds: [],
  ...o,
});

function run(path: string, invoker: Invoker, opts: Record<string, string | undefined> = {}) {
  const handler = handlers.get(path);
  if (!handler) throw new Error(`no handler for ${path}`);
  return handler(deps, invoker, opts);
}

async function text(path: string, invoker: Invoker, opts: Record<string, string | undefined> = {}): Promise<string> {
  const reply = await run(path, invoker, opts);
  if (reply.kind !== 'text') throw new Error(`expected text, got ${reply.kind}`);
  return reply.content;
}

/** A member holding a key issued the self-service way. */
async function holder(tier?: string): Promise<{ id: string; key: string; keyId: string; prefix: string }> {
  const id = discord.join(discordIdAged());
  const r = await issueKey(services.keys, { discordId: id, actor: `discord:${id}`, tier });
  if (!r.ok) throw new Error(r.message);
  return { id, key: r.key, keyId: r.record.id, prefix: r.record.prefix };
}

async function auditOf(target: string) {
  return services.store.listAudit({ target, limit: 20 });
}

describe('permission', () => {
  const refused: Array<[string, Invoker]> = [
    ['no permissions', mod({ permissions: 0n })],
    ['another role only', mod({ permissions: 0n, roleIds: [ROLE_MEMBER] })],
    ['Manage Server in another server', mod({ guildId: '100000000000000009' })],
    ['a direct message', mod({ guildId: null, permissions: null })],
  ];
  const actions: Array<[string, Record<string, string>]> = [
    ['mod lookup', {}],
    ['mod revoke', { reason: 'spam' }],
    ['mod suspend', { reason: 'spam' }],
    ['mod restore', {}],
    ['mod tier', { tier: 'pro' }],
    ['mod ban', { reason: 'spam' }],
    ['mod unban', {}],
    ['mod stats', {}],
    ['Revoke key', {}],
    ['Look up key holder', {}],
  ];

  it.each(refused)('refuses %s and changes nothing', async (_name, invoker) => {
    const h = await holder();
    const before = await services.store.listAudit({ limit: 100 });
    for (const [path, opts] of actions) {
      await expect(run(path, invoker, { user: h.id, ...opts }), path).rejects.toThrow(
        /Manage Server or a moderator role/,
      );
    }
    // The handlers check on their own too, whoever calls them.
    const direct = [
      () => modKey(deps, invoker, 'revoke', { user: h.id, reason: 'spam' }),
      () => modBan(deps, invoker, { user: h.id, reason: 'spam', banned: true }),
      () => modLookup(deps, invoker, { user: h.id }),
      () => modStats(deps, invoker),
    ];
    for (const call of direct) await expect(call()).rejects.toThrow(/Manage Server or a moderator role/);
    expect(await services.verifier.verify(h.key)).toMatchObject({ ok: true });
    expect(await services.store.listAudit({ limit: 100 })).toEqual(before);
    expect((await services.store.getUser(h.id))?.bannedAt).toBeNull();
    expect(discord.modLogs).toEqual([]);
    expect(discord.dms).toEqual([]);
  });

  it.each([
    ['Manage Server', mod({ permissions: MANAGE_GUILD })],
    ['Administrator', mod({ permissions: ADMINISTRATOR })],
    ['a moderator role', mod({ permissions: 0n, roleIds: [ROLE_MEMBER, ROLE_MOD] })],
  ])('allows %s', async (_name, invoker) => {
    const h = await holder();
    await text('mod revoke', invoker, { user: h.id, reason: 'spam' });
    expect(await services.verifier.verify(h.key)).toMatchObject({ ok: false, code: 'REVOKED' });
  });
});

describe('key actions', () => {
  it('revoke, suspend, restore and tier: audited, logged without key material, told by DM', async () => {
    const h = await holder();
    const steps: Array<[string, Record<string, string>, string, string | null]> = [
      ['mod suspend', { reason: 'posting the key publicly' }, 'key.suspend', 'posting the key publicly'],
      ['mod restore', { reason: 'cleaned up' }, 'key.restore', 'cleaned up'],
      ['mod tier', { tier: 'pro', reason: 'helper' }, 'key.tier', 'helper'],
      ['mod restore', {}, '', null],
      ['mod revoke', { reason: 'abuse' }, 'key.revoke', 'abuse'],
    ];
    for (const [path, opts, action, reason] of steps) {
      const logs = discord.modLogs.length;
      const call = run(path, mod(), { user: h.id, ...opts });
      if (!action) {
        // Restoring an active key is refused and leaves no trace.
        await expect(call).rejects.toThrow(/is active; it cannot be restored/);
        expect(discord.modLogs).toHaveLength(logs);
        continue;
      }
      const reply = await call;
      expect(reply.kind === 'text' && reply.content).toContain(`\`${h.prefix}…\``);
      expect((await auditOf(h.keyId))[0]).toMatchObject({ actor: `discord:${MOD}`, action, target: h.keyId, reason });
      const log = discord.modLogs.at(-1)!;
      expect(discord.modLogs).toHaveLength(logs + 1);
      expect(log).toContain(`<@${h.id}>`);
      expect(log).toContain(`by <@${MOD}>`);
      expect(log).toContain(reason ?? 'No reason given');
      expect(discord.dms.at(-1)).toMatchObject({ userId: h.id, content: expect.stringContaining(reason ?? '') });
    }
    for (const log of discord.modLogs) {
      expect(log).not.toContain(h.key);
      expect(log).not.toContain(h.prefix);
    }
    expect(discord.modLogs.join('\n')).toContain('Key tier changed from **free** to **pro**');
    expect(await services.verifier.verify(h.key)).toMatchObject({ ok: false, code: 'REVOKED' });
    await expect(run('mod revoke', mod(), { user: h.id, reason: 'again' })).rejects.toThrow(/has no live key/);
  });

  it('suspending takes effect at once and restoring brings the key back', async () => {
    const h = await holder();
    expect((await services.verifier.verify(h.key)).ok).toBe(true);
    await text('mod suspend', mod(), { user: h.id, reason: 'check' });
    expect(await services.verifier.verify(h.key)).toMatchObject({ ok: false, code: 'SUSPENDED' });
    await text('mod restore', mod(), { user: h.id });
    expect(await services.verifier.verify(h.key)).toMatchObject({ ok: true });
  });

  it('requires a reason to revoke or suspend, and checks the tier', async () => {
    const h = await holder();
    await expect(run('mod revoke', mod(), { user: h.id })).rejects.toThrow(/reason is required/);
    await expect(run('mod suspend', mod(), { user: h.id, reason: '  ' })).rejects.toThrow(/reason is required/);
    await expect(run('mod tier', mod(), { user: h.id, tier: 'gold' })).rejects.toThrow(/Tiers: free, pro/);
    await expect(run('mod revoke', mod(), { user: 'nobody', reason: 'x' })).rejects.toThrow(UserError);
    expect(await auditOf(h.keyId)).toHaveLength(1); // the issue only
    expect(discord.modLogs).toEqual([]);
  });

  it('keeps a key pasted into a reason out of the logs and the DM', async () => {
    const h = await holder();
    await text('mod revoke', mod(), { user: h.id, reason: `leaked ${h.key} in #general` });
    expect(discord.modLogs[0]).toContain('leaked [key removed] in #general');
    expect(discord.dms[0]?.content).not.toContain(h.key);
    expect((await auditOf(h.keyId))[0]?.reason).toBe('leaked [key removed] in #general');
  });

  it('reports a DM that cannot be delivered instead of failing', async () => {
    const h = await holder();
    discord.closedDms.add(h.id);
    const reply = await text('mod suspend', mod(), { user: h.id, reason: 'spam' });
    expect(reply).toContain(`The DM to <@${h.id}> could not be delivered`);
    expect(discord.modLogs).toHaveLength(1);

    discord.dm = async () => {
      throw new Error('Discord is down');
    };
    expect(await text('mod restore', mod(), { user: h.id })).toContain('could not be delivered');
    expect(await services.verifier.verify(h.key)).toMatchObject({ ok: true });
  });
});

describe('ban', () => {
  it('revokes the live key and refuses a later /key create until unbanned', async () => {
    const h = await holder();
    const reply = await text('mod ban', mod(), { user: h.id, reason: 'scraping' });
    expect(reply).toContain('Their live key was revoked');
    expect(await services.verifier.verify(h.key)).toMatchObject({ ok: false, code: 'REVOKED' });
    expect((await auditOf(h.id))[0]).toMatchObject({
      action: 'user.ban',
      actor: `discord:${MOD}`,
      target: h.id,
      reason: 'scraping',
    });
    expect(discord.modLogs[0]).toMatch(
      new RegExp(`^Banned from the relay: <@${h.id}> by <@${MOD}>\\. Reason: scraping$`),
    );
    expect(discord.dms[0]).toMatchObject({ userId: h.id, content: expect.stringContaining('scraping') });

    const member: Invoker = { userId: h.id, guildId: GUILD, permissions: 0n, roleIds: [ROLE_MEMBER] };
    await expect(run('key create', member)).rejects.toThrow(/banned/);
    await expect(run('mod ban', mod(), { user: h.id, reason: 'again' })).rejects.toThrow(/already banned/);

    await text('mod unban', mod(), { user: h.id });
    expect((await auditOf(h.id))[0]).toMatchObject({ action: 'user.unban', actor: `discord:${MOD}`, reason: null });
    expect((await run('key create', member)).kind).toBe('key');
    await expect(run('mod unban', mod(), { user: h.id })).rejects.toThrow(/not banned/);
    expect(discord.modLogs).toHaveLength(2);
  });

  it('can ban someone who never had a key', async () => {
    const id = discordIdAged();
    expect(await text('mod ban', mod(), { user: id, reason: 'known spammer' })).toContain('They had no live key');
    expect((await services.store.getUser(id))?.banReason).toBe('known spammer');
  });
});

describe('lookup, stats and context menus', () => {
  it('looks up key, ban state and usage without changing or posting anything', async () => {
    const h = await holder('pro');
    const reply = await text('mod lookup', mod(), { user: h.id });
    expect(reply).toContain(`<@${h.id}>`);
    expect(reply).toContain(`Key: \`${h.prefix}…\`, tier **pro**, active, created <t:`);
    expect(reply).toContain('Relay ban: no');
    expect(reply).toContain('Today: 0 / 500,000 tokens (0.0%)');
    expect(reply).not.toContain(h.key);
    expect(await text('mod lookup', mod(), { user: discordIdAged() })).toContain('Key: none');
    expect(discord.modLogs).toEqual([]);
    expect(discord.dms).toEqual([]);
  });

  it("shows today's totals and top users", async () => {
    const [a, b] = [await holder(), await holder()];
    const now = services.now();
    const rec = (discordId: string, chargedTokens: number) => usageRecord({ discordId, chargedTokens, createdAt: now });
    await services.store.insertUsage([rec(a.id, 100), rec(b.id, 3000), rec(b.id, 500)], (r) =>
      budgetDay(r.createdAt, 'UTC'),
    );
    await text('mod suspend', mod(), { user: a.id, reason: 'x' });
    const reply = await text('mod stats', mod());
    expect(reply).toContain(`(${budgetDay(now, 'UTC')}): 2 users, 3 requests, 3,600 tokens`);
    expect(reply).toContain('Keys: 1 active, 1 suspended');
    expect(reply).toContain(`1. <@${b.id}>: 3,500 tokens, 2 requests\n2. <@${a.id}>: 100 tokens, 1 requests`);
  });

  it('the user context menus revoke and look up', async () => {
    const h = await holder();
    expect(await text('Look up key holder', mod(), { user: h.id })).toContain(`\`${h.prefix}…\``);
    expect(await text('Revoke key', mod(), { user: h.id })).toContain('Key revoked');
    expect(await services.verifier.verify(h.key)).toMatchObject({ ok: false, code: 'REVOKED' });
    expect((await auditOf(h.keyId))[0]).toMatchObject({ action: 'key.revoke', actor: `discord:${MOD}` });
    expect(discord.modLogs[0]).toContain(`<@${h.id}>`);
  });

  it('registers /mod and the context menus for Manage Server only, with tier choices', () => {
    const defs = commandDefinitions(['free', 'pro']);
    const modDefs = defs.filter((d) => ['mod', 'Revoke key', 'Look up key holder'].includes(d.name));
    expect(modDefs).toHaveLength(3);
    for (const d of modDefs) expect(d).toMatchObject({ default_member_permissions: '32', contexts: [0] });
    expect(modDefs.filter((d) => d.type === 2).map((d) => d.name)).toEqual(['Revoke key', 'Look up key holder']);
    const json = JSON.stringify(defs.find((d) => d.name === 'mod'));
    expect(json).toContain('"choices":[{"name":"free","value":"free"},{"name":"pro","value":"pro"}]');
    const many = Array.from({ length: 30 }, (_, i) => `t${i}`);
    expect(JSON.stringify(commandDefinitions(many))).not.toContain('choices');
  });
});
