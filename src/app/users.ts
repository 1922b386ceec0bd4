// Personal data use cases: what we hold about a Discord user, and deleting it.
import { shiftDay } from '../domain/budget-day.js';
import { newId } from '../domain/ids.js';
import type { KeyEvents, Store } from '../domain/ports.js';
import type { AuditEntry } from '../domain/types.js';
import { announce, findLiveKey } from './keys.js';

export interface UserDeps {
  store: Store;
  keyEvents: KeyEvents;
  now: () => Date;
}

/** Everything stored about one user (key hashes excluded: they are secrets' fingerprints, not user data). */
export async function exportUserData(deps: UserDeps, discordId: string) {
  const user = await deps.store.getUser(discordId);
  if (!user) return null;
  const keys = await deps.store.listKeys({ discordId, limit: 1000 });
  const usage = await deps.store.listUsage(discordId, 100_000);
  return {
    exportedAt: deps.now().toISOString(),
    user,
    keys: keys.map(({ hash: _hash, ...k }) => k),
    usage,
    note: 'Guildgate stores request metadata only (model, token counts, status, timing); never prompts or completions.',
  };
}

/**
 * Why a member may not delete their own data, or null. A ban or a suspension lives in the records
 * deletion removes, so deleting would lift it: those members must go through a moderator.
 */
export async function selfDeletionHold(deps: Pick<UserDeps, 'store'>, discordId: string): Promise<string | null> {
  const [user, key] = await Promise.all([deps.store.getUser(discordId), findLiveKey(deps, discordId)]);
  if (!user?.bannedAt && key?.status !== 'suspended') return null;
  const what = user?.bannedAt ? 'You are banned from the relay' : 'Your key is suspended';
  return `${what}; the record of that cannot be deleted by yourself. Ask a moderator.`;
}

const DELETE_ACTION = 'user.delete';

/**
 * Budget days that may still be running: whatever the budget time zone, its date is within one day
 * of the UTC date.
 */
function runningDays(now: Date): { fromDay: string; toDay: string } {
  const utc = now.toISOString().slice(0, 10);
  return { fromDay: shiftDay(utc, -1), toDay: shiftDay(utc, 1) };
}

/**
 * Tokens a user was charged on `day` before deleting their data, from the deletion audit entries
 * (target: the Discord id). Deletion removes the daily usage the budget ledger is rebuilt from, so
 * without this a restart after deleting would refill the day's budget.
 */
export function chargedBeforeDeletion(entries: AuditEntry[], day: string): number {
  let sum = 0;
  for (const e of entries) {
    if (e.action !== DELETE_ACTION) continue;
    const charged = (e.meta?.chargedByDay as Record<string, unknown> | undefined)?.[day];
    if (typeof charged === 'number') sum += charged;
  }
  return sum;
}

/**
 * Deletes the user, their keys and usage. The audit entry names the id only, plus what the user was
 * charged on the budget days still running (see `chargedBeforeDeletion`).
 */
export async function deleteUser(
  deps: UserDeps,
  input: { discordId: string; actor: string },
): Promise<{ ok: true; keys: number; usageRecords: number } | { ok: false; code: 'NOT_FOUND'; message: string }> {
  const user = await deps.store.getUser(input.discordId);
  const keys = await deps.store.listKeys({ discordId: input.discordId, limit: 1000 });
  const running = await deps.store.dailyUsage({ discordId: input.discordId, ...runningDays(deps.now()) });
  // Deleting runs even without a user row: usage written just after an earlier deletion must
  // still be removable.
  const removed = await deps.store.deleteUser(input.discordId);
  if (!user && removed.keys === 0 && removed.usageRecords === 0) {
    return { ok: false, code: 'NOT_FOUND', message: `No stored data for Discord user ${input.discordId}.` };
  }
  for (const k of keys) await announce(deps, k.hash);
  const chargedByDay: Record<string, number> = {};
  for (const r of running) chargedByDay[r.day] = (chargedByDay[r.day] ?? 0) + r.chargedTokens;
  await deps.store.appendAudit({
    id: newId('aud'),
    at: deps.now(),
    actor: input.actor,
    action: DELETE_ACTION,
    target: input.discordId,
    reason: null,
    meta: running.length ? { ...removed, chargedByDay } : removed,
  });
  return { ok: true, ...removed };
}
