import { describe, expect, it } from 'vitest';
import { checkGates, type GateConfig, type MemberFacts } from '../../src/domain/gates.js';

const DAY = 86_400_000;
const now = new Date('2026-11-24T12:00:00Z');
/** A snowflake for an account created `daysAgo` days before `now`. */
function idCreated(daysAgo: number): string {
  return String((BigInt(now.getTime() - daysAgo * DAY) - 1420070400000n) << 22n);
}
const open: GateConfig = { requiredRoleIds: [], minAccountAgeDays: 0, minMemberDays: 0, requireScreening: true };
const member = (over: Partial<NonNullable<MemberFacts['member']>> = {}, age = 100): MemberFacts => ({
  discordId: idCreated(age),
  member: { pending: false, roleIds: [], joinedAt: new Date(now.getTime() - 30 * DAY), ...over },
});

describe('checkGates', () => {
  it('admits a plain member when no gate is set', () => {
    expect(checkGates(member(), open, now)).toEqual({ ok: true });
  });

  it('refuses non-members and members still in screening', () => {
    expect(checkGates({ discordId: idCreated(100), member: null }, open, now)).toMatchObject({ gate: 'not_member' });
    expect(checkGates(member({ pending: true }), open, now)).toMatchObject({ gate: 'screening_pending' });
    expect(checkGates(member({ pending: true }), { ...open, requireScreening: false }, now)).toEqual({ ok: true });
  });

  it('requires every configured role id, naming the missing ones', () => {
    const gates = { ...open, requiredRoleIds: ['111111111111111111', '222222222222222222'] };
    const r = checkGates(member({ roleIds: ['111111111111111111'] }), gates, now);
    expect(r).toMatchObject({ ok: false, gate: 'missing_role' });
    expect(r.ok || r.message).toContain('<@&222222222222222222>');
    expect(checkGates(member({ roleIds: gates.requiredRoleIds }), gates, now)).toEqual({ ok: true });
  });

  it('measures account age from the snowflake and says how long to wait', () => {
    const gates = { ...open, minAccountAgeDays: 30 };
    const r = checkGates(member({}, 28), gates, now);
    expect(r).toMatchObject({ ok: false, gate: 'account_too_new' });
    expect(r.ok || r.message).toContain('Try again in 2 days');
    expect(checkGates(member({}, 31), gates, now)).toEqual({ ok: true });
  });

  it('measures time in the guild from joinedAt', () => {
    const gates = { ...open, minMemberDays: 7 };
    expect(checkGates(member({ joinedAt: new Date(now.getTime() - 6.5 * DAY) }), gates, now)).toMatchObject({
      gate: 'member_too_new',
    });
    expect(checkGates(member({ joinedAt: null }), gates, now)).toMatchObject({ gate: 'member_too_new' });
    expect(checkGates(member({ joinedAt: new Date(now.getTime() - 8 * DAY) }), gates, now)).toEqual({ ok: true });
  });
});
