// Membership sync use cases on a real SQLite-backed Services. Discord is a port: an in-memory
// directory stands in for the server (members, bans, mod-log channel).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { issueKey, suspendKey } from '../../src/app/keys.js';
import {
  type MembershipDeps,
  type MembershipPolicy,
  memberBanned,
  memberLeft,
  memberRolesChanged,
  REASONS,
  reconcileHolders,
  SYNC_ACTOR,
} from '../../src/app/membership.js';
import { buildConfig } from '../../src/config/load.js';
import { buildServices } from '../../src/container.js';
import type { Services } from '../../src/services.js';
import { InMemoryDirectory } from '../helpers/discord-directory.js';

const MEMBER_ROLE = '400000000000000001';
const SUPPORTER_ROLE = '400000000000000002';
const BOOSTER_ROLE = '400000000000000003';
const TIER = { rpm: 10, tokensPerDay: 1000 };

let dir: string;
let services: Services;
let discord: InMemoryDirectory;
let deps: MembershipDeps;
let published: string[];
let seq = 0;

const policy: MembershipPolicy = {
  leavePolicy: 'suspend',
  requiredRoleIds: [MEMBER_ROLE],
  requireScreening: true,
  roleTiers: { [SUPPORTER_ROLE]: 'supporter', [BOOSTER_ROLE]: 'booster' },
  defaultTier: 'free',
};

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'gg-membership-'));
  const raw = {
    dataDir: dir,
    storage: { store: 'sqlite', limits: 'memory' },
    tiers: { free: TIER, supporter: TIER, booster: TIER },
  };
  services = await buildServices(buildConfig(raw, {}, 'test'), { log: pino({ level: 'silent' }) });
  discord = new InMemoryDirectory([MEMBER_ROLE]);
  deps = { keys: services.keys, discord };
  published = [];
  await services.keyEvents.subscribe((h) => published.push(h));
});

afterEach(async () => {
  await services.close();
  rmSync(dir, { recursive: true, force: true });
});

async function holder(roleIds = [MEMBER_ROLE], tier?: string) {
  seq += 1;
  const discordId = `30000000000000${String(seq).padStart(4, '0')}`;
  const r = await issueKey(services.keys, { discordId, actor: 'test', tier });
  if (!r.ok) throw new Error(r.message);
  discord.join(discordId, { roleIds });
  return { discordId, key: r.key, keyId: r.record.id, hash: r.record.hash, prefix: r.record.prefix };
}

async function keyOf(keyId: string) {
  return services.store.getKeyById(keyId);
}

async function lastAudit(target: string) {
  return (await services.store.listAudit({ target, limit: 1 }))[0];
}

function expectNoSecretsPosted(h: { key: string; prefix: string }) {
  for (const post of discord.modLogs) {
    expect(post).not.toContain(h.key);
    expect(post).not.toContain(h.prefix);
  }
}

describe('memberLeft', () => {
  it('suspends under the suspend policy, audits, tells the caches and posts to the mod log', async () => {
    const h = await holder();
    expect(await memberLeft(deps, h.discordId, 'suspend', SYNC_ACTOR)).toEqual(['suspended']);
    expect(await keyOf(h.keyId)).toMatchObject({ status: 'suspended', statusReason: REASONS.left });
    expect(await lastAudit(h.keyId)).toMatchObject({ action: 'key.suspend', actor: SYNC_ACTOR });
    expect(published).toContain(h.hash);
    expect((await services.verifier.verify(h.key)).ok).toBe(false);
    expect(discord.modLogs).toEqual([`Suspended the key of <@${h.discordId}>: left the server.`]);
    expectNoSecretsPosted(h);
  });

  it('revokes under the revoke policy, suspended keys too', async () => {
    const h = await holder();
    await suspendKey(services.keys, { keyId: h.keyId, actor: 'cli', reason: 'moderator hold' });
    expect(await memberLeft(deps, h.discordId, 'revoke', SYNC_ACTOR)).toEqual(['revoked']);
    expect(await keyOf(h.keyId)).toMatchObject({ status: 'revoked', statusReason: REASONS.left });
    expect(discord.modLogs).toEqual([`Revoked the key of <@${h.discordId}>: left the server.`]);
  });

  it('leaves an already suspended key and its reason alone, and ignores users without a key', async () => {
    const h = await holder();
    await suspendKey(services.keys, { keyId: h.keyId, actor: 'cli', reason: 'moderator hold' });
    expect(await memberLeft(deps, h.discordId, 'suspend', SYNC_ACTOR)).toEqual([]);
    expect(await keyOf(h.keyId)).toMatchObject({ status: 'suspended', statusReason: 'moderator hold' });
    expect(await memberLeft(deps, '399999999999999999', 'suspend', SYNC_ACTOR)).toEqual([]);
    expect(discord.modLogs).toEqual([]);
  });
});

describe('memberBanned', () => {
  it('bans the user from the relay and revokes the live key', async () => {
    const h = await holder();
    expect(await memberBanned(deps, h.discordId, SYNC_ACTOR)).toEqual(['banned', 'revoked']);
    expect(await keyOf(h.keyId)).toMatchObject({ status: 'revoked' });
    expect(await services.store.getUser(h.discordId)).toMatchObject({ banReason: REASONS.banned });
    expect(published).toContain(h.hash);
    const again = await issueKey(services.keys, { discordId: h.discordId, actor: 'test' });
    expect(again).toMatchObject({ ok: false, code: 'BANNED' });
    expect(discord.modLogs).toEqual([
      `<@${h.discordId}> was banned from the server: banned from the relay, key revoked.`,
    ]);
    expectNoSecretsPosted(h);
  });

  it('bans a user without a key, so they cannot get one later', async () => {
    const discordId = '399999999999999998';
    expect(await memberBanned(deps, discordId, SYNC_ACTOR, 'spam')).toEqual(['banned']);
    expect(await services.store.getUser(discordId)).toMatchObject({ banReason: 'spam' });
  });
});

describe('memberRolesChanged', () => {
  it('suspends when a required role is lost and restores when it comes back', async () => {
    const h = await holder();
    expect(await memberRolesChanged(deps, h.discordId, { roleIds: [], pending: false }, policy, SYNC_ACTOR)).toEqual([
      'suspended',
    ]);
    expect(await keyOf(h.keyId)).toMatchObject({ status: 'suspended', statusReason: REASONS.missingRole });
    expect((await services.verifier.verify(h.key)).ok).toBe(false);
    expect(
      await memberRolesChanged(deps, h.discordId, { roleIds: [MEMBER_ROLE], pending: false }, policy, SYNC_ACTOR),
    ).toEqual(['restored']);
    expect(await keyOf(h.keyId)).toMatchObject({ status: 'active', statusReason: null });
    expect((await services.verifier.verify(h.key)).ok).toBe(true);
    expect(discord.modLogs).toEqual([
      `Suspended the key of <@${h.discordId}>: missing a required role.`,
      `Restored the key of <@${h.discordId}>: meets the role requirements again.`,
    ]);
  });

  it('suspends a member whose screening is pending when screening is required', async () => {
    const h = await holder();
    const pending = { roleIds: [MEMBER_ROLE], pending: true };
    expect(await memberRolesChanged(deps, h.discordId, pending, policy, SYNC_ACTOR)).toEqual(['suspended']);
    expect(await keyOf(h.keyId)).toMatchObject({ statusReason: REASONS.screening });
    const lenient = { ...policy, requireScreening: false };
    expect(await memberRolesChanged(deps, h.discordId, pending, lenient, SYNC_ACTOR)).toEqual(['restored']);
  });

  it('never restores a key suspended for another reason (moderator, leaving)', async () => {
    const a = await holder();
    const b = await holder();
    await suspendKey(services.keys, { keyId: a.keyId, actor: 'cli', reason: 'abuse' });
    await memberLeft(deps, b.discordId, 'suspend', SYNC_ACTOR);
    for (const h of [a, b]) {
      const member = { roleIds: [MEMBER_ROLE], pending: false };
      expect(await memberRolesChanged(deps, h.discordId, member, policy, SYNC_ACTOR)).toEqual([]);
      expect(await keyOf(h.keyId)).toMatchObject({ status: 'suspended' });
    }
  });

  it('moves the key to the tier of the first matching role, or the default tier', async () => {
    const h = await holder();
    const roles = (...r: string[]) => ({ roleIds: [MEMBER_ROLE, ...r], pending: false });
    expect(
      await memberRolesChanged(deps, h.discordId, roles(BOOSTER_ROLE, SUPPORTER_ROLE), policy, SYNC_ACTOR),
    ).toEqual(['retiered']);
    expect(await keyOf(h.keyId)).toMatchObject({ tier: 'supporter' });
    expect(await lastAudit(h.keyId)).toMatchObject({ action: 'key.tier', meta: { from: 'free', to: 'supporter' } });
    expect(await memberRolesChanged(deps, h.discordId, roles(SUPPORTER_ROLE), policy, SYNC_ACTOR)).toEqual([]);
    expect(await memberRolesChanged(deps, h.discordId, roles(), policy, SYNC_ACTOR)).toEqual(['retiered']);
    expect(await keyOf(h.keyId)).toMatchObject({ tier: 'free' });
    expect(discord.modLogs.at(-1)).toBe(
      `Moved the key of <@${h.discordId}> from tier supporter to free: roles changed.`,
    );
  });

  it('leaves tiers alone when no role map is configured', async () => {
    const h = await holder([MEMBER_ROLE], 'booster');
    const noMap = { ...policy, roleTiers: {} };
    expect(
      await memberRolesChanged(deps, h.discordId, { roleIds: [MEMBER_ROLE], pending: false }, noMap, SYNC_ACTOR),
    ).toEqual([]);
    expect(await keyOf(h.keyId)).toMatchObject({ tier: 'booster', status: 'active' });
  });
});

describe('reconcileHolders', () => {
  it('applies leaves, bans and role changes missed while the bot was away, one lookup per holder', async () => {
    const present = await holder([MEMBER_ROLE, SUPPORTER_ROLE], 'supporter');
    const left = await holder();
    const banned = await holder();
    const lostRole = await holder();
    const suspendedByRole = await holder();
    await memberRolesChanged(deps, suspendedByRole.discordId, { roleIds: [], pending: false }, policy, SYNC_ACTOR);
    discord.members.delete(left.discordId);
    discord.members.delete(banned.discordId);
    discord.bans.add(banned.discordId);
    discord.join(lostRole.discordId, { roleIds: [] });
    discord.memberLookups = [];
    discord.modLogs = [];

    const report = await reconcileHolders(deps, policy, { actor: SYNC_ACTOR });

    expect(report).toEqual({ checked: 5, changed: 4, failed: [] });
    expect(await keyOf(present.keyId)).toMatchObject({ status: 'active', tier: 'supporter' });
    expect(await keyOf(left.keyId)).toMatchObject({ status: 'suspended', statusReason: REASONS.left });
    expect(await keyOf(banned.keyId)).toMatchObject({ status: 'revoked' });
    expect(await services.store.getUser(banned.discordId)).toMatchObject({ bannedAt: expect.any(Date) });
    expect(await keyOf(lostRole.keyId)).toMatchObject({ status: 'suspended', statusReason: REASONS.missingRole });
    expect(await keyOf(suspendedByRole.keyId)).toMatchObject({ status: 'active' });
    expect(discord.memberLookups.sort()).toEqual(
      [present, left, banned, lostRole, suspendedByRole].map((h) => h.discordId).sort(),
    );
    // Bans are only looked up for users who are not members.
    expect(discord.banLookups.sort()).toEqual([left.discordId, banned.discordId].sort());
    expect(discord.modLogs).toHaveLength(4);
    for (const h of [present, left, banned, lostRole, suspendedByRole]) expectNoSecretsPosted(h);
  });

  it('is idempotent: a second run changes nothing', async () => {
    const left = await holder();
    discord.members.delete(left.discordId);
    await reconcileHolders(deps, policy, { actor: SYNC_ACTOR });
    discord.modLogs = [];
    expect(await reconcileHolders(deps, policy, { actor: SYNC_ACTOR })).toEqual({ checked: 1, changed: 0, failed: [] });
    expect(discord.modLogs).toEqual([]);
  });

  it('reports a failed lookup and goes on with the other holders', async () => {
    const flaky = await holder();
    const left = await holder();
    discord.failing.add(flaky.discordId);
    discord.members.delete(left.discordId);
    const report = await reconcileHolders(deps, policy, { actor: SYNC_ACTOR });
    expect(report.failed.map((f) => f.discordId)).toEqual([flaky.discordId]);
    expect(await keyOf(flaky.keyId)).toMatchObject({ status: 'active' });
    expect(await keyOf(left.keyId)).toMatchObject({ status: 'suspended' });
  });

  it('stops between holders once aborted', async () => {
    await holder();
    await holder();
    const stop = new AbortController();
    stop.abort();
    expect(await reconcileHolders(deps, policy, { actor: SYNC_ACTOR, signal: stop.signal })).toMatchObject({
      checked: 0,
    });
    expect(discord.memberLookups).toEqual([]);
  });
});
