// KeyVerifier on a real SQLite file: the checksum gate, the lookup cache's TTL and its race guard.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MemoryKeyEvents } from '../../src/adapters/memory/limits.js';
import { SqliteStore } from '../../src/adapters/sqlite/sqlite-store.js';
import { issueKey, type KeyDeps, revokeKey } from '../../src/app/keys.js';
import { KeyVerifier } from '../../src/app/verify-key.js';
import { newId } from '../../src/domain/ids.js';
import { displayPrefix, generateKey, hashKey, isWellFormedKey } from '../../src/domain/keys.js';
import type { Store } from '../../src/domain/ports.js';

const USER = '300000000000000002';
let dir: string;
const stores: SqliteStore[] = [];

function openStore(): SqliteStore {
  const s = SqliteStore.open(join(dir, 'guildgate.db'));
  stores.push(s);
  return s;
}

function deps(store: Store, keyEvents = new MemoryKeyEvents()): KeyDeps {
  const gates = { requiredRoleIds: [], minAccountAgeDays: 0, minMemberDays: 0, requireScreening: false };
  return { store, keyEvents, now: () => new Date(), tiers: { free: {} }, defaultTier: 'free', gates };
}

async function issue(d: KeyDeps): Promise<{ key: string; keyId: string }> {
  const r = await issueKey(d, { discordId: USER, actor: 'test' });
  if (!r.ok) throw new Error(r.message);
  return { key: r.key, keyId: r.record.id };
}

/** The real store, with every getKeyByHash recorded and, when `hold` is given, awaited after the read. */
function observed(store: Store, hold?: () => Promise<void>): { store: Store; lookups: string[] } {
  const lookups: string[] = [];
  const proxy = new Proxy(store, {
    get(target, prop) {
      if (prop === 'getKeyByHash') {
        return async (hash: string) => {
          lookups.push(hash);
          const record = await target.getKeyByHash(hash);
          await hold?.();
          return record;
        };
      }
      const v = Reflect.get(target, prop, target);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
  return { store: proxy, lookups };
}

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'gg-verify-'));
});
afterEach(async () => {
  await Promise.all(stores.splice(0).map((s) => s.close()));
  rmSync(dir, { recursive: true, force: true });
});

describe('KeyVerifier', () => {
  it('calls a key with a bad checksum MALFORMED without a lookup, even when its hash is stored', async () => {
    const store = openStore();
    const good = generateKey().key;
    const last = good.at(-1) === 'z' ? 'y' : 'z';
    const bad = good.slice(0, -1) + last;
    expect(isWellFormedKey(bad)).toBe(false);
    await store.ensureUser(USER, new Date());
    await store.insertKey({
      id: newId('key'),
      hash: hashKey(bad),
      prefix: displayPrefix(bad),
      discordId: USER,
      tier: 'free',
      status: 'active',
      statusReason: null,
      createdAt: new Date(),
      expiresAt: null,
      revokedAt: null,
    });
    const { store: watched, lookups } = observed(store);
    const verifier = new KeyVerifier(watched, 60_000);
    expect(await verifier.verify(bad)).toEqual({ ok: false, code: 'MALFORMED' });
    expect(lookups).toEqual([]);
  });

  it('serves a key from cache, and sees a revocation it was not told about once the TTL passed', async () => {
    const ttlMs = 300;
    const { store: watched, lookups } = observed(openStore());
    const verifier = new KeyVerifier(watched, ttlMs);
    await verifier.listen(new MemoryKeyEvents());
    // Another process (the CLI, a replica without Redis) on the same database, on its own event bus.
    const other = deps(openStore());
    const { key, keyId } = await issue(other);

    expect(await verifier.verify(key)).toMatchObject({ ok: true });
    expect((await revokeKey(other, { keyId, actor: 'test' })).ok).toBe(true);
    expect(await verifier.verify(key)).toMatchObject({ ok: true });
    expect(lookups).toHaveLength(1);

    await new Promise((r) => setTimeout(r, ttlMs + 100));
    expect(await verifier.verify(key)).toEqual({ ok: false, code: 'REVOKED' });
    expect(lookups).toHaveLength(2);
  });

  it('does not cache a lookup that was in flight when the key was invalidated', async () => {
    let release!: () => void;
    let reached!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const atGate = new Promise<void>((r) => {
      reached = r;
    });
    let held = false;
    const store = openStore();
    const { store: watched } = observed(store, async () => {
      if (held) return;
      held = true;
      reached();
      await gate;
    });
    const events = new MemoryKeyEvents();
    const verifier = new KeyVerifier(watched, 60_000);
    await verifier.listen(events);
    const d = deps(store, events);
    const { key, keyId } = await issue(d);

    const pending = verifier.verify(key);
    await atGate; // the lookup has read the key while it was still active
    expect((await revokeKey(d, { keyId, actor: 'test' })).ok).toBe(true); // publishes → invalidate
    release();
    expect(await pending).toMatchObject({ ok: true });
    expect(await verifier.verify(key)).toEqual({ ok: false, code: 'REVOKED' });
  });
});
