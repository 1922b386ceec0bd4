// Typed, prefixed ids: a glance tells what an id names, and none of them is a secret.
import { randomFillSync } from 'node:crypto';

export type IdKind = 'key' | 'req' | 'aud';

const ID_BYTES = 12;
// Random bytes drawn in bulk: one id per request makes per-call randomBytes a measurable cost.
const pool = Buffer.alloc(ID_BYTES * 512);
let offset = pool.length;

export function newId(kind: IdKind): string {
  if (offset === pool.length) {
    randomFillSync(pool);
    offset = 0;
  }
  const id = pool.toString('base64url', offset, offset + ID_BYTES);
  offset += ID_BYTES;
  return `${kind}_${id}`;
}

/** Discord snowflakes: 17-20 digits. */
export function isSnowflake(value: string): boolean {
  return /^\d{17,20}$/.test(value);
}

/** When a Discord account was created, from its snowflake. */
export function snowflakeTime(id: string): Date {
  return new Date(Number((BigInt(id) >> 22n) + 1420070400000n));
}
