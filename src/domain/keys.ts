// API key format: `gg_` + base58(24 random bytes) + base58 checksum (first 4 bytes of SHA-256 of the
// random part, fixed width 6). The prefix makes leaked keys recognisable to secret scanners; the
// checksum rejects typos and random guesses without a database lookup. Only the SHA-256 of the whole
// key is stored.
import { hash, randomBytes, timingSafeEqual } from 'node:crypto';

export const KEY_PREFIX = 'gg_';
const ALPHABET = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz';
const RANDOM_BYTES = 24; // 192 bits
const CHECKSUM_LEN = 6;
/** Characters after `gg_` shown to identify a key. */
const DISPLAY_CHARS = 6;
const KEY_RE = /^gg_[1-9A-HJ-NP-Za-km-z]{20,60}$/;

export function base58(bytes: Uint8Array): string {
  let n = 0n;
  for (const b of bytes) n = (n << 8n) | BigInt(b);
  let out = '';
  while (n > 0n) {
    out = ALPHABET[Number(n % 58n)] + out;
    n /= 58n;
  }
  for (const b of bytes) {
    if (b !== 0) break;
    out = `1${out}`;
  }
  return out;
}

function checksum(body: string): string {
  const digest = hash('sha256', body, 'buffer').subarray(0, 4);
  return base58(digest).padStart(CHECKSUM_LEN, '1');
}

export interface NewKey {
  /** The secret: shown once, never stored. */
  key: string;
  hash: string;
  prefix: string;
}

export function generateKey(): NewKey {
  const body = base58(randomBytes(RANDOM_BYTES));
  const key = `${KEY_PREFIX}${body}${checksum(body)}`;
  return { key, hash: hashKey(key), prefix: displayPrefix(key) };
}

export function hashKey(key: string): string {
  // One-shot: no Hash object per request.
  return hash('sha256', key, 'hex');
}

export function displayPrefix(key: string): string {
  return key.slice(0, KEY_PREFIX.length + DISPLAY_CHARS);
}

/** True when `candidate` has the Guildgate key shape and a valid checksum. Cheap; no lookup. */
export function isWellFormedKey(candidate: string): boolean {
  if (!KEY_RE.test(candidate)) return false;
  const body = candidate.slice(KEY_PREFIX.length, -CHECKSUM_LEN);
  const expected = Buffer.from(checksum(body));
  const given = Buffer.from(candidate.slice(-CHECKSUM_LEN));
  return expected.length === given.length && timingSafeEqual(expected, given);
}

/** Finds strings in free text that look like Guildgate keys with a valid checksum. */
export function findKeysInText(text: string): string[] {
  return (text.match(/gg_[1-9A-HJ-NP-Za-km-z]{20,60}/g) ?? []).filter(isWellFormedKey);
}
