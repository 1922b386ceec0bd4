// Keeps keys in step with Discord membership: leaving, bans and role changes suspend, revoke,
// restore or re-tier a member's key. The bot calls these from gateway events and from a periodic
// reconciler that catches whatever events were missed. Discord itself sits behind a port.
import type { KeyRecord } from '../domain/types.js';
import { findLiveKey, type KeyDeps, restoreKey, revokeKey, setKeyTier, setUserBan, suspendKey } from './keys.js';

/** What membership sync needs from Discord; the bot's DiscordDirectory satisfies it. */
export interface MemberDirectory {
  /** The member's roles and screening state now, or null when the user is not in the server. */
  member(userId: string): Promise<{ roleIds: string[]; pending: boolean } | null>;
  isBanned(userId: string): Promise<boolean>;
  /** Posts to the moderators' log channel. Best effort, never throws. */
  modLog(content: string): Promise<void>;
}

export interface MembershipDeps {
  keys: KeyDeps;
  discord: MemberDirectory;
}

export type LeavePolicy = 'suspend' | 'revoke';

/** What the member's roles decide: whether the key may stay active, and at which tier. */
export interface RoleRules {
  requiredRoleIds: string[];
  /** Membership screening not passed counts as a missing requirement. */
  requireScreening: boolean;
  /** Role id → tier, first match wins; empty means tiers are not managed by roles. */
  roleTiers: Record<string, string>;
  defaultTier: string;
}

export interface MembershipPolicy extends RoleRules {
  leavePolicy: LeavePolicy;
}

export type MembershipAction = 'suspended' | 'revoked' | 'restored' | 'retiered' | 'banned';

/** Audit actor of changes the bot makes on its own (events and reconciler). */
export const SYNC_ACTOR = 'discord:sync';

/** Status reasons the sync writes; the unmet-requirement ones tell which suspensions it may lift itself. */
export const REASONS = {
  left: 'left the Discord server',
  banned: 'banned from the Discord server',
  missingRole: 'discord sync: missing a required role',
  screening: 'discord sync: membership screening not passed',
} as const;

/** Suspensions the sync lifts by itself once the member qualifies again; any other stays for a moderator. */
const UNMET_WHY: Record<string, string> = {
  [REASONS.missingRole]: 'missing a required role',
  [REASONS.screening]: 'membership screening not passed',
};

/** Enough to hold every live key of a community; listKeys has no paging. */
const MAX_LIVE_KEYS = 1_000_000;

const mention = (discordId: string) => `<@${discordId}>`;

/** A member left (or was kicked): their live key is suspended or revoked as the leave policy says. */
export async function memberLeft(
  deps: MembershipDeps,
  discordId: string,
  policy: LeavePolicy,
  actor: string,
): Promise<MembershipAction[]> {
  const live = await findLiveKey(deps.keys, discordId);
  if (!live) return [];
  if (policy === 'revoke') {
    const r = await revokeKey(deps.keys, { keyId: live.id, actor, reason: REASONS.left });
    if (!r.ok) return [];
    await deps.discord.modLog(`Revoked the key of ${mention(discordId)}: left the server.`);
    return ['revoked'];
  }
  // Already suspended (for a role, or by a moderator): it stays so, with its reason.
  if (live.status !== 'active') return [];
  const r = await suspendKey(deps.keys, { keyId: live.id, actor, reason: REASONS.left });
  if (!r.ok) return [];
  await deps.discord.modLog(`Suspended the key of ${mention(discordId)}: left the server.`);
  return ['suspended'];
}

/** A server ban becomes a relay ban, which revokes the live key and refuses new ones. */
export async function memberBanned(
  deps: MembershipDeps,
  discordId: string,
  actor: string,
  reason: string = REASONS.banned,
): Promise<MembershipAction[]> {
  const { revoked } = await setUserBan(deps.keys, { discordId, actor, banned: true, reason });
  await deps.discord.modLog(
    `${mention(discordId)} was banned from the server: banned from the relay${revoked ? ', key revoked' : ''}.`,
  );
  return revoked ? ['banned', 'revoked'] : ['banned'];
}

function unmetRequirement(member: { roleIds: string[]; pending: boolean }, rules: RoleRules): string | null {
  if (rules.requireScreening && member.pending) return REASONS.screening;
  if (rules.requiredRoleIds.some((r) => !member.roleIds.includes(r))) return REASONS.missingRole;
  return null;
}

/** The tier the roles give, or null when tiers are not managed by roles (so operator-set tiers stay). */
function tierFor(roleIds: string[], rules: RoleRules): string | null {
  const entries = Object.entries(rules.roleTiers);
  if (entries.length === 0) return null;
  return entries.find(([role]) => roleIds.includes(role))?.[1] ?? rules.defaultTier;
}

/**
 * The member's roles or screening state changed: a key whose holder no longer qualifies is
 * suspended, one the sync suspended is restored once they qualify again, and the tier follows the
 * role map.
 */
export async function memberRolesChanged(
  deps: MembershipDeps,
  discordId: string,
  member: { roleIds: string[]; pending: boolean },
  rules: RoleRules,
  actor: string,
): Promise<MembershipAction[]> {
  const live = await findLiveKey(deps.keys, discordId);
  if (!live) return [];
  const done: MembershipAction[] = [];
  const unmet = unmetRequirement(member, rules);
  if (unmet && live.status === 'active') {
    if ((await suspendKey(deps.keys, { keyId: live.id, actor, reason: unmet })).ok) {
      await deps.discord.modLog(`Suspended the key of ${mention(discordId)}: ${UNMET_WHY[unmet]}.`);
      done.push('suspended');
    }
  } else if (!unmet && live.status === 'suspended' && Object.hasOwn(UNMET_WHY, live.statusReason ?? '')) {
    if ((await restoreKey(deps.keys, { keyId: live.id, actor, reason: 'meets the role requirements again' })).ok) {
      await deps.discord.modLog(`Restored the key of ${mention(discordId)}: meets the role requirements again.`);
      done.push('restored');
    }
  }
  if (await retier(deps, live, tierFor(member.roleIds, rules), actor)) done.push('retiered');
  return done;
}

async function retier(deps: MembershipDeps, key: KeyRecord, tier: string | null, actor: string): Promise<boolean> {
  if (tier === null || tier === key.tier) return false;
  const r = await setKeyTier(deps.keys, { keyId: key.id, tier, actor, reason: 'roles changed' });
  if (!r.ok) return false;
  await deps.discord.modLog(
    `Moved the key of ${mention(key.discordId)} from tier ${key.tier} to ${tier}: roles changed.`,
  );
  return true;
}

export interface ReconcileReport {
  /** Holders looked up. */
  checked: number;
  /** Holders whose key changed. */
  changed: number;
  /** Holders whose lookup or update failed; the next run tries again. */
  failed: Array<{ discordId: string; err: unknown }>;
}

async function liveHolders(deps: MembershipDeps): Promise<string[]> {
  const [active, suspended] = await Promise.all([
    deps.keys.store.listKeys({ status: 'active', limit: MAX_LIVE_KEYS }),
    deps.keys.store.listKeys({ status: 'suspended', limit: MAX_LIVE_KEYS }),
  ]);
  return [...new Set([...active, ...suspended].map((k) => k.discordId))];
}

/** Brings one holder's key in line with what Discord says about them now. */
async function syncHolder(
  deps: MembershipDeps,
  discordId: string,
  policy: MembershipPolicy,
  actor: string,
): Promise<MembershipAction[]> {
  const member = await deps.discord.member(discordId);
  if (member) return memberRolesChanged(deps, discordId, member, policy, actor);
  // Only a non-member can be banned, so the ban lookup is skipped for everyone present.
  if (await deps.discord.isBanned(discordId)) return memberBanned(deps, discordId, actor);
  return memberLeft(deps, discordId, policy.leavePolicy, actor);
}

/**
 * Checks every holder of a live key against the server, one lookup at a time (Discord rate-limits
 * member lookups per route), and applies what the events would have. Stops between holders once
 * `signal` aborts.
 */
export async function reconcileHolders(
  deps: MembershipDeps,
  policy: MembershipPolicy,
  opts: { actor: string; signal?: AbortSignal },
): Promise<ReconcileReport> {
  const report: ReconcileReport = { checked: 0, changed: 0, failed: [] };
  for (const discordId of await liveHolders(deps)) {
    if (opts.signal?.aborted) break;
    report.checked += 1;
    try {
      if ((await syncHolder(deps, discordId, policy, opts.actor)).length > 0) report.changed += 1;
    } catch (err) {
      report.failed.push({ discordId, err });
    }
  }
  return report;
}
