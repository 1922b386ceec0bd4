// An in-memory stand-in for the Discord directory port (bot/types.ts `DiscordDirectory`, which also
// satisfies src/app/membership.ts `MemberDirectory`), for tests that cannot run Discord itself. It
// holds members and bans, records every lookup, DM and mod-log post, and can be told that a user's
// DMs are closed or that looking a user up fails.
import type { DiscordDirectory, GuildMember } from '../../bot/types.js';

const DAY = 86_400_000;
/** Discord's epoch (2015-01-01T00:00:00Z) in ms. */
const DISCORD_EPOCH = 1420070400000;

let seq = 0;
/** A fresh Discord id whose snowflake dates the account `daysAgo` days back (an old account by default). */
export function discordIdAged(daysAgo = 400): string {
  seq += 1;
  return String((BigInt(Date.now() - daysAgo * DAY - DISCORD_EPOCH) << 22n) + BigInt(seq));
}

export class InMemoryDirectory implements DiscordDirectory {
  members = new Map<string, GuildMember>();
  /** Users banned from the server. */
  bans = new Set<string>();
  /** Users whose DMs are closed: `dm` answers false and records nothing. */
  closedDms = new Set<string>();
  /** Users whose member lookup throws, as a Discord outage would. */
  failing = new Set<string>();
  /** DMs delivered, in order. */
  dms: Array<{ userId: string; content: string }> = [];
  /** Mod-log posts, in order. */
  modLogs: string[] = [];
  /** User ids passed to `member`, in order. */
  memberLookups: string[] = [];
  /** User ids passed to `isBanned`, in order. */
  banLookups: string[] = [];

  /** `defaultRoleIds`: the roles a member added with `join` holds unless told otherwise. */
  constructor(private readonly defaultRoleIds: readonly string[] = []) {}

  async member(userId: string) {
    this.memberLookups.push(userId);
    if (this.failing.has(userId)) throw new Error('Discord is having a moment');
    return this.members.get(userId) ?? null;
  }
  async isBanned(userId: string) {
    this.banLookups.push(userId);
    return this.bans.has(userId);
  }
  async dm(userId: string, content: string) {
    if (this.closedDms.has(userId)) return false;
    this.dms.push({ userId, content });
    return true;
  }
  async modLog(content: string) {
    this.modLogs.push(content);
  }

  /** Adds a member who passes every gate (default roles, screened, joined 30 days ago) unless told otherwise. */
  join(userId: string, o: Partial<GuildMember> = {}): string {
    this.members.set(userId, {
      userId,
      roleIds: [...this.defaultRoleIds],
      pending: false,
      joinedAt: new Date(Date.now() - 30 * DAY),
      ...o,
    });
    return userId;
  }
}
