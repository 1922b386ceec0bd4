// The key lifecycle use cases every face calls, on a real (in-memory) SQLite store.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MemoryKeyEvents } from '../../src/adapters/memory/limits.js';
import { SqliteStore } from '../../src/adapters/sqlite/sqlite-store.js';
import {
  issueKey,
  type KeyDeps,
  restoreKey,
  revokeKey,
  rotateKey,
  setKeyTier,
  setUserBan,
  suspendKey,
} from '../../src/app/keys.js';
import { deleteUser, exportUserData } from '../../src/app/users.js';
import { hashKey } from '../../src/domain/keys.js';

const USER = '300000000000000001';
let store: SqliteStore;
let deps: KeyDeps;
let published: string[];

beforeEach(async () => {
  store = SqliteStore.open(':memory:');
  const keyEvents = new MemoryKeyEvents();
  published = [];
  await keyEvents.subscribe((h) => published.push(h));
  deps = {
    store,
    keyEvents,
    now: () => new Date('2026-11-24T12:00:00Z'),
    tiers: { free: {}, pro: {} },
    defaultTier: 'free',
    gates: { requiredRoleIds: ['999999999999999999'], minAccountAgeDays: 0, minMemberDays: 0, requireScreening: true },
  };
});
afterEach(() => store.close());

async function actions(target: string) {
  return (await store.listAudit({ target, limit: 50 })).map((a) => a.action);
}

describe('issueKey', () => {
  it('stores only the hash and audits the issue', async () => {
    const r = await issueKey(deps, { discordId: USER, actor: 'cli' });
    if (!r.ok) throw new Error(r.message);
    const stored = await store.getKeyByHash(hashKey(r.key));
    expect(stored).toMatchObject({ id: r.record.id, tier: 'free', status: 'active' });
    expect(JSON.stringify(stored)).not.toContain(r.key);
    expect(await actions(r.record.id)).toEqual(['key.issue']);
  });

  it('applies the gates to self-service requests and names the failed gate', async () => {
    const member = { discordId: USER, member: { pending: false, roleIds: [], joinedAt: null } };
    const r = await issueKey(deps, { discordId: USER, actor: `discord:${USER}`, member });
    expect(r).toMatchObject({ ok: false, code: 'GATE_FAILED', gate: 'missing_role' });
    expect(await store.listKeys({ discordId: USER })).toHaveLength(0);
    const ok = await issueKey(deps, {
      discordId: USER,
      actor: `discord:${USER}`,
      member: { ...member, member: { ...member.member, roleIds: ['999999999999999999'] } },
    });
    expect(ok.ok).toBe(true);
  });

  it('refuses a second live key and a banned user, and an unknown tier', async () => {
    await issueKey(deps, { discordId: USER, actor: 'cli' });
    expect(await issueKey(deps, { discordId: USER, actor: 'cli' })).toMatchObject({ ok: false, code: 'KEY_EXISTS' });
    for (const tier of ['gold', 'toString', '__proto__']) {
      expect(await issueKey(deps, { discordId: USER, actor: 'cli', tier })).toMatchObject({ code: 'UNKNOWN_TIER' });
    }
    const ban = await setUserBan(deps, { discordId: USER, actor: 'cli', banned: true, reason: 'spam' });
    expect(ban.revoked).toBe(1);
    expect(await issueKey(deps, { discordId: USER, actor: 'cli' })).toMatchObject({ ok: false, code: 'BANNED' });
    await setUserBan(deps, { discordId: USER, actor: 'cli', banned: false });
    expect((await issueKey(deps, { discordId: USER, actor: 'cli' })).ok).toBe(true);
  });
});

describe('changes announce themselves to every replica', () => {
  it('revoke, suspend, restore and tier changes publish the key hash and audit', async () => {
    const r = await issueKey(deps, { discordId: USER, actor: 'cli' });
    if (!r.ok) throw new Error(r.message);
    const id = r.record.id;
    expect((await suspendKey(deps, { keyId: id, actor: 'cli', reason: 'abuse' })).ok).toBe(true);
    expect(await suspendKey(deps, { keyId: id, actor: 'cli', reason: 'again' })).toMatchObject({
      code: 'WRONG_STATUS',
      status: 'suspended',
    });
    expect(await rotateKey(deps, { keyId: id, actor: 'cli' })).toMatchObject({ code: 'WRONG_STATUS' });
    expect((await restoreKey(deps, { keyId: id, actor: 'cli' })).ok).toBe(true);
    expect((await setKeyTier(deps, { keyId: id, tier: 'pro', actor: 'cli' })).ok).toBe(true);
    expect((await revokeKey(deps, { keyId: id, actor: 'cli', reason: 'done' })).ok).toBe(true);
    expect(await revokeKey(deps, { keyId: id, actor: 'cli' })).toMatchObject({ code: 'WRONG_STATUS' });
    expect(await revokeKey(deps, { keyId: 'key_missing1', actor: 'cli' })).toMatchObject({ code: 'NOT_FOUND' });
    expect(published).toEqual(Array(4).fill(r.record.hash));
    expect((await actions(id)).sort()).toEqual(['key.issue', 'key.restore', 'key.revoke', 'key.suspend', 'key.tier']);
  });

  it('rotate kills the old key first and keeps owner, tier and expiry', async () => {
    const expiresAt = new Date('2027-01-01T00:00:00Z');
    const r = await issueKey(deps, { discordId: USER, actor: 'cli', tier: 'pro', expiresAt });
    if (!r.ok) throw new Error(r.message);
    const rotated = await rotateKey(deps, { keyId: r.record.id, actor: 'web' });
    if (!rotated.ok) throw new Error(rotated.message);
    expect(rotated.key).not.toBe(r.key);
    expect(rotated.record).toMatchObject({ discordId: USER, tier: 'pro', expiresAt, status: 'active' });
    expect(await store.getKeyById(r.record.id)).toMatchObject({ status: 'revoked', statusReason: 'rotated' });
    expect(published).toEqual([r.record.hash]);
  });
});

describe('personal data', () => {
  it('exports without key hashes and deletes everything but the audit trail', async () => {
    const r = await issueKey(deps, { discordId: USER, actor: 'cli' });
    if (!r.ok) throw new Error(r.message);
    const data = await exportUserData(deps, USER);
    expect(data?.keys).toHaveLength(1);
    expect(JSON.stringify(data)).not.toContain(r.record.hash);
    expect(await deleteUser(deps, { discordId: USER, actor: 'cli' })).toMatchObject({ ok: true, keys: 1 });
    expect(await exportUserData(deps, USER)).toBeNull();
    expect(published).toContain(r.record.hash);
    expect(await actions(USER)).toContain('user.delete');
    expect(await deleteUser(deps, { discordId: USER, actor: 'cli' })).toMatchObject({ ok: false, code: 'NOT_FOUND' });
  });
});
