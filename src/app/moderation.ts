// Moderator use cases addressed by Discord user rather than key id: a moderator picks a member,
// not a key. Each change goes through the key use cases, so it is audited and announced the same way.
import type { KeyRecord, User } from '../domain/types.js';
import {
  type ChangedKey,
  findLiveKey,
  type KeyDeps,
  type KeyFailure,
  restoreKey,
  revokeKey,
  setKeyTier,
  setUserBan,
  suspendKey,
} from './keys.js';
import { type UsageDeps, type UsageSummary, usageSummary } from './usage-summary.js';

export type KeyAction = 'revoke' | 'suspend' | 'restore' | 'tier';

export type ModeratedKey = ChangedKey & { previous: KeyRecord };

/** Applies `action` to the target's live key. `tier` is required for the tier action. */
export async function moderateKey(
  deps: KeyDeps,
  input: { target: string; action: KeyAction; actor: string; reason: string | null; tier?: string },
): Promise<ModeratedKey | KeyFailure> {
  const previous = await findLiveKey(deps, input.target);
  if (!previous) {
    return { ok: false, code: 'NOT_FOUND', message: `Discord user ${input.target} has no live key.` };
  }
  const keyId = previous.id;
  const { actor, reason } = input;
  let r: ChangedKey | KeyFailure;
  switch (input.action) {
    case 'revoke':
      r = await revokeKey(deps, { keyId, actor, reason });
      break;
    case 'suspend':
      r = await suspendKey(deps, { keyId, actor, reason: reason ?? '' });
      break;
    case 'restore':
      r = await restoreKey(deps, { keyId, actor, reason });
      break;
    case 'tier':
      r = await setKeyTier(deps, { keyId, actor, reason, tier: input.tier ?? '' });
      break;
  }
  return r.ok ? { ...r, previous } : r;
}

export type BanResult =
  | { ok: true; revoked: number }
  | { ok: false; code: 'UNCHANGED'; message: string; user: User | null };

/** Sets or lifts the relay ban; refuses a no-op so nobody is told twice. Banning revokes the live key. */
export async function setBan(
  deps: KeyDeps,
  input: { target: string; actor: string; banned: boolean; reason: string | null },
): Promise<BanResult> {
  const user = await deps.store.getUser(input.target);
  if (Boolean(user?.bannedAt) === input.banned) {
    const state = input.banned ? 'already banned' : 'not banned';
    return { ok: false, code: 'UNCHANGED', message: `Discord user ${input.target} is ${state}.`, user };
  }
  return setUserBan(deps, { discordId: input.target, actor: input.actor, banned: input.banned, reason: input.reason });
}

export interface UserLookup {
  user: User | null;
  key: KeyRecord | null;
  usage: UsageSummary;
}

export async function lookupUser(deps: UsageDeps, discordId: string, now: Date): Promise<UserLookup> {
  const [user, key, usage] = await Promise.all([
    deps.store.getUser(discordId),
    findLiveKey(deps, discordId),
    usageSummary(deps, discordId, now),
  ]);
  return { user, key, usage };
}

/** Counting past this many keys would load them all; beyond it the count shows as "at least". */
const KEY_COUNT_CAP = 10_000;

export interface ModerationStats {
  day: string;
  /** Today's totals over every user. */
  today: { users: number; requests: number; chargedTokens: number };
  top: Array<{ discordId: string; requests: number; chargedTokens: number }>;
  keys: { active: number; suspended: number; capped: boolean };
}

export async function moderationStats(deps: UsageDeps, now: Date, topN = 10): Promise<ModerationStats> {
  const { day } = deps.limits.calendar.at(now);
  const [rows, top, active, suspended] = await Promise.all([
    deps.store.dailyUsage({ fromDay: day, toDay: day }),
    deps.store.topUsers(day, topN),
    deps.store.listKeys({ status: 'active', limit: KEY_COUNT_CAP }),
    deps.store.listKeys({ status: 'suspended', limit: KEY_COUNT_CAP }),
  ]);
  const today = {
    users: new Set(rows.map((r) => r.discordId)).size,
    requests: rows.reduce((n, r) => n + r.requests, 0),
    chargedTokens: rows.reduce((n, r) => n + r.chargedTokens, 0),
  };
  const capped = active.length === KEY_COUNT_CAP || suspended.length === KEY_COUNT_CAP;
  return { day, today, top, keys: { active: active.length, suspended: suspended.length, capped } };
}
