// Typed, prefixed ids: a glance tells what an id names, and none of them is a secret.
import { randomBytes } from 'node:crypto';
import { base58 } from './keys.js';

export type IdKind = 'key' | 'req' | 'aud';

export function newId(kind: IdKind): string {
  return `${kind}_${base58(randomBytes(12))}`;
}

export function isId(kind: IdKind, value: string): boolean {
  return new RegExp(`^${kind}_[1-9A-HJ-NP-Za-km-z]{8,24}$`).test(value);
}

/** Discord snowflakes: 17-20 digits. */
export function isSnowflake(value: string): boolean {
  return /^\d{17,20}$/.test(value);
}

/** When a Discord account was created, from its snowflake. */
export function snowflakeTime(id: string): Date {
  return new Date(Number((BigInt(id) >> 22n) + 1420070400000n));
}
