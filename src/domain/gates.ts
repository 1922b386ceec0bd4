// Who may get a key. The bot and the web sign-in gather the facts from Discord; this decides.
// Every refusal names the gate that failed and what the member can do about it.
import { snowflakeTime } from './ids.js';

export interface GateConfig {
  /** Role ids the member must hold (all of them). Ids, never names: names can be copied. */
  requiredRoleIds: string[];
  /** Minimum age of the Discord account, from its snowflake. */
  minAccountAgeDays: number;
  /** Minimum time since the member joined the guild. */
  minMemberDays: number;
  /** Refuse members who have not passed membership screening (`pending`). */
  requireScreening: boolean;
}

/** What Discord says about the member in the configured guild. `null` member: not in the guild. */
export interface MemberFacts {
  discordId: string;
  member: { pending: boolean; roleIds: string[]; joinedAt: Date | null } | null;
}

export type GateName = 'not_member' | 'screening_pending' | 'missing_role' | 'account_too_new' | 'member_too_new';

export type GateResult = { ok: true } | { ok: false; gate: GateName; message: string };

const DAY_MS = 86_400_000;

function days(n: number): string {
  return `${n} day${n === 1 ? '' : 's'}`;
}

export function checkGates(facts: MemberFacts, gates: GateConfig, now: Date): GateResult {
  const m = facts.member;
  if (!m) {
    return { ok: false, gate: 'not_member', message: 'You must be a member of the Discord server to get a key.' };
  }
  if (gates.requireScreening && m.pending) {
    return {
      ok: false,
      gate: 'screening_pending',
      message: "Complete the server's membership screening (accept the rules) first.",
    };
  }
  const missing = gates.requiredRoleIds.filter((r) => !m.roleIds.includes(r));
  if (missing.length > 0) {
    return {
      ok: false,
      gate: 'missing_role',
      message: `You need the role${missing.length > 1 ? 's' : ''} ${missing.map((r) => `<@&${r}>`).join(', ')} to get a key.`,
    };
  }
  const accountAge = now.getTime() - snowflakeTime(facts.discordId).getTime();
  if (accountAge < gates.minAccountAgeDays * DAY_MS) {
    const wait = Math.ceil((gates.minAccountAgeDays * DAY_MS - accountAge) / DAY_MS);
    return {
      ok: false,
      gate: 'account_too_new',
      message: `Your Discord account must be at least ${days(gates.minAccountAgeDays)} old. Try again in ${days(wait)}.`,
    };
  }
  if (gates.minMemberDays > 0) {
    const memberFor = m.joinedAt ? now.getTime() - m.joinedAt.getTime() : 0;
    if (memberFor < gates.minMemberDays * DAY_MS) {
      const wait = Math.ceil((gates.minMemberDays * DAY_MS - memberFor) / DAY_MS);
      return {
        ok: false,
        gate: 'member_too_new',
        message: `You must have been in the server for ${days(gates.minMemberDays)}. Try again in ${days(wait)}.`,
      };
    }
  }
  return { ok: true };
}
