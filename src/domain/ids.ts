// Typed, prefixed ids: a glance tells what an id names, and none of them is a secret.
import { randomFillSync } from 'node:crypto';

export type IdKind = 'key' | 'req' | 'aud';

const TIME_BYTES = 6;
const RANDOM_BYTES = 9;
// Random bytes drawn in bulk: one id per request makes per-call randomBytes a measurable cost.
const pool = Buffer.alloc(RANDOM_BYTES * 512);
let offset = pool.length;
const scratch = Buffer.alloc(TIME_BYTES + RANDOM_BYTES);

/**
 * `kind_` + base64url(48-bit milliseconds + 72 random bits). Time first, so ids made close together
 * share a prefix and inserting them touches a few index pages instead of pages all over the index.
 */
export function newId(kind: IdKind): string {
  if (offset === pool.length) {
    randomFillSync(pool);
    offset = 0;
  }
  scratch.writeUIntBE(Date.now(), 0, TIME_BYTES);
  pool.copy(scratch, TIME_BYTES, offset, offset + RANDOM_BYTES);
  offset += RANDOM_BYTES;
  return `${kind}_${scratch.toString('base64url')}`;
}

/** Discord snowflakes: 17-20 digits. */
export function isSnowflake(value: string): boolean {
  return /^\d{17,20}$/.test(value);
}

/** When a Discord account was created, from its snowflake. */
export function snowflakeTime(id: string): Date {
  return new Date(Number((BigInt(id) >> 22n) + 1420070400000n));
}
