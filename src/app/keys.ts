// Key lifecycle use cases. The CLI, the Discord bot and the web dashboard all call these, so every
// path through them writes the same audit entries and tells every replica to drop cached lookups.
import { LiveKeyExistsError } from '../domain/errors.js';
import { checkGates, type GateConfig, type GateName, type MemberFacts } from '../domain/gates.js';
import { newId } from '../domain/ids.js';
import { generateKey } from '../domain/keys.js';
import type { KeyEvents, Store } from '../domain/ports.js';
import type { KeyRecord, KeyStatus } from '../domain/types.js';

export interface KeyDeps {
  store: Store;
  keyEvents: KeyEvents;
  now: () => Date;
  tiers: Record<string, unknown>;
  defaultTier: string;
  gates: GateConfig;
}

export type KeyFailure =
  | { ok: false; code: 'BANNED'; message: string }
  | { ok: false; code: 'GATE_FAILED'; gate: GateName; message: string }
  | { ok: false; code: 'KEY_EXISTS'; message: string; existing: KeyRecord | null }
  | { ok: false; code: 'NOT_FOUND'; message: string }
  | { ok: false; code: 'WRONG_STATUS'; message: string; status: KeyStatus }
  | { ok: false; code: 'UNKNOWN_TIER'; message: string };

export type IssuedKey = { ok: true; key: string; record: KeyRecord };
export type ChangedKey = { ok: true; record: KeyRecord };

async function audit(
  deps: KeyDeps,
  actor: string,
  action: string,
  target: string,
  reason: string | null,
  meta: Record<string, unknown> | null = null,
): Promise<void> {
  await deps.store.appendAudit({ id: newId('aud'), at: deps.now(), actor, action, target, reason, meta });
}

function unknownTier(tier: string): KeyFailure {
  return { ok: false, code: 'UNKNOWN_TIER', message: `There is no tier named "${tier}".` };
}

/** The tier of the first configured role the member holds (config order), else none (default tier). */
export function tierForRoles(roleTiers: Record<string, string>, roleIds: string[]): string | undefined {
  return Object.entries(roleTiers).find(([role]) => roleIds.includes(role))?.[1];
}

/** The Discord user's live (active or suspended) key, if any. */
export async function findLiveKey(deps: Pick<KeyDeps, 'store'>, discordId: string): Promise<KeyRecord | null> {
  const keys = await deps.store.listKeys({ discordId, limit: 20 });
  return keys.find((k) => k.status !== 'revoked') ?? null;
}

/**
 * Issues a key for a Discord user: one live key per user, none for banned users. Self-service
 * faces (bot, web) pass what Discord says about the member and the gates apply; an operator
 * issuing from the CLI passes no member facts and bypasses them.
 */
export async function issueKey(
  deps: KeyDeps,
  input: { discordId: string; actor: string; tier?: string; expiresAt?: Date | null; member?: MemberFacts },
): Promise<IssuedKey | KeyFailure> {
  const tier = input.tier ?? deps.defaultTier;
  if (!Object.hasOwn(deps.tiers, tier)) return unknownTier(tier);
  const now = deps.now();
  if (input.member) {
    const gate = checkGates(input.member, deps.gates, now);
    if (!gate.ok) return { ok: false, code: 'GATE_FAILED', gate: gate.gate, message: gate.message };
  }
  const user = await deps.store.ensureUser(input.discordId, now);
  if (user.bannedAt) {
    return { ok: false, code: 'BANNED', message: 'This Discord user is banned from the relay.' };
  }
  const fresh = generateKey();
  const record: KeyRecord = {
    id: newId('key'),
    hash: fresh.hash,
    prefix: fresh.prefix,
    discordId: input.discordId,
    tier,
    status: 'active',
    statusReason: null,
    createdAt: now,
    expiresAt: input.expiresAt ?? null,
    revokedAt: null,
  };
  try {
    await deps.store.insertKey(record);
  } catch (err) {
    if (!(err instanceof LiveKeyExistsError)) throw err;
    return {
      ok: false,
      code: 'KEY_EXISTS',
      message: 'This Discord user already has a key. Rotate it to get a new one.',
      existing: await findLiveKey(deps, input.discordId),
    };
  }
  await audit(deps, input.actor, 'key.issue', record.id, null, { discordId: input.discordId, tier });
  return { ok: true, key: fresh.key, record };
}

/**
 * Tells every replica to drop its cached lookup of this key. Best effort: the change is already
 * stored, and without the event the cache TTL still bounds how long a replica can lag.
 */
export async function announce(deps: Pick<KeyDeps, 'keyEvents'>, hash: string): Promise<void> {
  await deps.keyEvents.publish(hash).catch(() => {});
}

async function changed(deps: KeyDeps, record: KeyRecord): Promise<ChangedKey> {
  await announce(deps, record.hash);
  return { ok: true, record };
}

async function refuse(deps: KeyDeps, keyId: string, wanted: string): Promise<KeyFailure> {
  const current = await deps.store.getKeyById(keyId);
  if (!current) return { ok: false, code: 'NOT_FOUND', message: `No key with id ${keyId}.` };
  return {
    ok: false,
    code: 'WRONG_STATUS',
    status: current.status,
    message: `Key ${keyId} is ${current.status}; only ${wanted} keys can be changed this way.`,
  };
}

/** Revokes a key for good. Takes effect on every replica at once (cache invalidation). */
export async function revokeKey(
  deps: KeyDeps,
  input: { keyId: string; actor: string; reason?: string | null },
): Promise<ChangedKey | KeyFailure> {
  const reason = input.reason ?? null;
  const record = await deps.store.updateKey(
    input.keyId,
    { status: 'revoked', statusReason: reason, revokedAt: deps.now() },
    ['active', 'suspended'],
  );
  if (!record) return refuse(deps, input.keyId, 'active or suspended');
  await audit(deps, input.actor, 'key.revoke', record.id, reason, { discordId: record.discordId });
  return changed(deps, record);
}

export async function suspendKey(
  deps: KeyDeps,
  input: { keyId: string; actor: string; reason: string },
): Promise<ChangedKey | KeyFailure> {
  const record = await deps.store.updateKey(input.keyId, { status: 'suspended', statusReason: input.reason }, [
    'active',
  ]);
  if (!record) return refuse(deps, input.keyId, 'active');
  await audit(deps, input.actor, 'key.suspend', record.id, input.reason, { discordId: record.discordId });
  return changed(deps, record);
}

export async function restoreKey(
  deps: KeyDeps,
  input: { keyId: string; actor: string; reason?: string | null },
): Promise<ChangedKey | KeyFailure> {
  const record = await deps.store.updateKey(input.keyId, { status: 'active', statusReason: null }, ['suspended']);
  if (!record) return refuse(deps, input.keyId, 'suspended');
  await audit(deps, input.actor, 'key.restore', record.id, input.reason ?? null, { discordId: record.discordId });
  return changed(deps, record);
}

export async function setKeyTier(
  deps: KeyDeps,
  input: { keyId: string; tier: string; actor: string; reason?: string | null },
): Promise<ChangedKey | KeyFailure> {
  if (!Object.hasOwn(deps.tiers, input.tier)) return unknownTier(input.tier);
  const before = await deps.store.getKeyById(input.keyId);
  const record = await deps.store.updateKey(input.keyId, { tier: input.tier }, ['active', 'suspended']);
  if (!record) return refuse(deps, input.keyId, 'active or suspended');
  await audit(deps, input.actor, 'key.tier', record.id, input.reason ?? null, {
    discordId: record.discordId,
    from: before?.tier ?? null,
    to: input.tier,
  });
  return changed(deps, record);
}

/**
 * Replaces an active key with a new one of the same owner, tier and expiry. The old key dies first,
 * so there is never a moment with two live keys; if storing the new one fails, the old one is put back.
 */
export async function rotateKey(
  deps: KeyDeps,
  input: { keyId: string; actor: string },
): Promise<IssuedKey | KeyFailure> {
  const now = deps.now();
  const old = await deps.store.updateKey(input.keyId, { status: 'revoked', statusReason: 'rotated', revokedAt: now }, [
    'active',
  ]);
  if (!old) return refuse(deps, input.keyId, 'active');
  await announce(deps, old.hash);
  const fresh = generateKey();
  const record: KeyRecord = {
    ...old,
    id: newId('key'),
    hash: fresh.hash,
    prefix: fresh.prefix,
    status: 'active',
    statusReason: null,
    createdAt: now,
    revokedAt: null,
  };
  try {
    await deps.store.insertKey(record);
  } catch (err) {
    await deps.store.updateKey(old.id, { status: 'active', statusReason: null, revokedAt: null }, ['revoked']);
    throw err;
  }
  await audit(deps, input.actor, 'key.rotate', record.id, null, { discordId: record.discordId, replaces: old.id });
  return { ok: true, key: fresh.key, record };
}

export async function setUserBan(
  deps: KeyDeps,
  input: { discordId: string; actor: string; banned: boolean; reason?: string | null },
): Promise<{ ok: true; revoked: number }> {
  const now = deps.now();
  await deps.store.ensureUser(input.discordId, now);
  await deps.store.setUserBan(input.discordId, input.banned ? { at: now, reason: input.reason ?? '' } : null);
  let revoked = 0;
  if (input.banned) {
    const live = await findLiveKey(deps, input.discordId);
    if (live) {
      const r = await revokeKey(deps, { keyId: live.id, actor: input.actor, reason: 'user banned' });
      if (r.ok) revoked = 1;
    }
  }
  await audit(deps, input.actor, input.banned ? 'user.ban' : 'user.unban', input.discordId, input.reason ?? null);
  return { ok: true, revoked };
}
