// Authenticates an API key. Lookups are cached in-process for a short TTL; a change anywhere
// (revoke, suspend, rotate, tier) publishes the key hash and every replica drops its entry, so the
// TTL only bounds staleness when the event channel is lost.
import { hashKey, isWellFormedKey } from '../domain/keys.js';
import type { KeyEvents, Store } from '../domain/ports.js';
import type { KeyRecord } from '../domain/types.js';

export type VerifyResult =
  | { ok: true; key: KeyRecord }
  | { ok: false; code: 'MALFORMED' | 'UNKNOWN' | 'REVOKED' | 'SUSPENDED' | 'EXPIRED' };

interface Entry {
  record: KeyRecord | null;
  expires: number;
}

const MAX_ENTRIES = 50_000;
/** Longer than any key we issue; hashing megabytes of junk would be a cheap attack. */
const MAX_KEY_LENGTH = 128;

export class KeyVerifier {
  private readonly cache = new Map<string, Entry>();
  /** Bumped on every invalidation, so a lookup that raced with one is not cached. */
  private epoch = 0;

  constructor(
    private readonly store: Store,
    private readonly ttlMs: number,
    private readonly now: () => Date = () => new Date(),
  ) {}

  /** Starts listening for key changes from any replica. */
  async listen(events: KeyEvents): Promise<void> {
    await events.subscribe((hash) => this.invalidate(hash));
  }

  invalidate(hash: string): void {
    this.epoch++;
    this.cache.delete(hash);
  }

  async verify(rawKey: string): Promise<VerifyResult> {
    if (rawKey.length > MAX_KEY_LENGTH) return { ok: false, code: 'MALFORMED' };
    const hash = hashKey(rawKey);
    const hit = this.cache.get(hash);
    // A cached hash was well formed when it was first seen; only misses pay for the checksum.
    let record: KeyRecord | null;
    if (hit && hit.expires > Date.now()) record = hit.record;
    else if (!isWellFormedKey(rawKey)) return { ok: false, code: 'MALFORMED' };
    else record = await this.lookup(hash);
    if (!record) return { ok: false, code: 'UNKNOWN' };
    if (record.status === 'revoked') return { ok: false, code: 'REVOKED' };
    if (record.status === 'suspended') return { ok: false, code: 'SUSPENDED' };
    if (record.expiresAt && record.expiresAt.getTime() <= this.now().getTime()) return { ok: false, code: 'EXPIRED' };
    return { ok: true, key: record };
  }

  private async lookup(hash: string): Promise<KeyRecord | null> {
    const t = Date.now();
    const epoch = this.epoch;
    const record = await this.store.getKeyByHash(hash);
    if (this.ttlMs > 0 && epoch === this.epoch) {
      if (this.cache.size >= MAX_ENTRIES) this.cache.delete(this.cache.keys().next().value as string);
      this.cache.set(hash, { record, expires: t + this.ttlMs });
    }
    return record;
  }
}
