// Personal data use cases: what we hold about a Discord user, and deleting it.
import { newId } from '../domain/ids.js';
import type { KeyEvents, Store } from '../domain/ports.js';
import { announce } from './keys.js';

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

/** Deletes the user, their keys and usage. The audit entry names the id only. */
export async function deleteUser(
  deps: UserDeps,
  input: { discordId: string; actor: string },
): Promise<{ ok: true; keys: number; usageRecords: number } | { ok: false; code: 'NOT_FOUND'; message: string }> {
  const user = await deps.store.getUser(input.discordId);
  const keys = await deps.store.listKeys({ discordId: input.discordId, limit: 1000 });
  // Deleting runs even without a user row: usage written just after an earlier deletion must
  // still be removable.
  const removed = await deps.store.deleteUser(input.discordId);
  if (!user && removed.keys === 0 && removed.usageRecords === 0) {
    return { ok: false, code: 'NOT_FOUND', message: `No stored data for Discord user ${input.discordId}.` };
  }
  for (const k of keys) await announce(deps, k.hash);
  await deps.store.appendAudit({
    id: newId('aud'),
    at: deps.now(),
    actor: input.actor,
    action: 'user.delete',
    target: input.discordId,
    reason: null,
    meta: removed,
  });
  return { ok: true, ...removed };
}
