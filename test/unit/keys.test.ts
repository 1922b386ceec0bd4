// API key format, checksum and hashing (src/domain/keys.ts). The checksum is re-derived here from
// the documented recipe, so the test pins the format rather than echoing the implementation.
import { createHash, randomInt } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  displayPrefix,
  findKeysInText,
  generateKey,
  hashKey,
  isWellFormedKey,
  KEY_PREFIX,
} from '../../src/domain/keys.js';

const ALPHABET = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz';
const CHECKSUM_LEN = 6;
const KEY_SHAPE = /^gg_[1-9A-HJ-NP-Za-km-z]+$/;

/** Value of a base58 string (leading '1's are zero bytes and add nothing to the value). */
function decode58(s: string): bigint {
  let n = 0n;
  for (const c of s) {
    const digit = ALPHABET.indexOf(c);
    if (digit < 0) throw new Error(`not base58: ${c}`);
    n = n * 58n + BigInt(digit);
  }
  return n;
}

function split(key: string): { body: string; check: string } {
  return { body: key.slice(KEY_PREFIX.length, -CHECKSUM_LEN), check: key.slice(-CHECKSUM_LEN) };
}

function replaceAt(s: string, i: number, c: string): string {
  return s.slice(0, i) + c + s.slice(i + 1);
}

/** A base58 character other than `not`. */
function otherChar(not: string): string {
  let c = not;
  while (c === not) c = ALPHABET[randomInt(ALPHABET.length)]!;
  return c;
}

describe('generateKey', () => {
  it('is gg_ + base58 of 24 random bytes + a 6-character checksum of the body', () => {
    for (let i = 0; i < 200; i++) {
      const { key } = generateKey();
      expect(key).toMatch(KEY_SHAPE);
      const { body, check } = split(key);
      // 24 bytes are at most 33 base58 digits; fewer only when the random number happens to be small.
      expect(body.length).toBeLessThanOrEqual(33);
      expect(body.length).toBeGreaterThanOrEqual(28);
      expect(decode58(body) < 1n << 192n).toBe(true);
      const digest = createHash('sha256').update(body).digest();
      expect(decode58(check)).toBe(BigInt(digest.readUInt32BE(0)));
    }
  });

  it('has the full 42-character length for the overwhelming majority of keys', () => {
    const lengths = Array.from({ length: 1000 }, () => generateKey().key.length);
    expect(Math.max(...lengths)).toBe(42);
    // P(a 24-byte number has fewer than 33 base58 digits) is about 4%.
    expect(lengths.filter((n) => n === 42).length).toBeGreaterThan(850);
  });

  it('returns the hash and display prefix of the key it generated', () => {
    const k = generateKey();
    expect(k.hash).toBe(hashKey(k.key));
    expect(k.prefix).toBe(displayPrefix(k.key));
    expect(k.key.startsWith(k.prefix)).toBe(true);
  });

  it('generates 10k unique keys, all well-formed, with unique hashes', () => {
    const keys = new Set<string>();
    const hashes = new Set<string>();
    for (let i = 0; i < 10_000; i++) {
      const k = generateKey();
      keys.add(k.key);
      hashes.add(k.hash);
      if (!isWellFormedKey(k.key)) throw new Error(`generated key failed its own check: ${k.prefix}...`);
    }
    expect(keys.size).toBe(10_000);
    expect(hashes.size).toBe(10_000);
  });
});

describe('isWellFormedKey', () => {
  it('accepts a generated key', () => {
    expect(isWellFormedKey(generateKey().key)).toBe(true);
  });

  it('rejects every single-character substitution of a real key (sampled)', () => {
    let tried = 0;
    for (let k = 0; k < 4; k++) {
      const { key } = generateKey();
      for (let i = 0; i < key.length; i++) {
        for (let j = 0; j < 3; j++) {
          const mutated = replaceAt(key, i, otherChar(key[i]!));
          expect(isWellFormedKey(mutated), `position ${i}`).toBe(false);
          tried++;
        }
      }
    }
    expect(tried).toBeGreaterThan(400);
  });

  it('rejects characters outside base58 (0 O I l) anywhere after the prefix', () => {
    const { key } = generateKey();
    for (const bad of ['0', 'O', 'I', 'l', '-', '_', ' ']) {
      for (const i of [3, 10, key.length - 1]) expect(isWellFormedKey(replaceAt(key, i, bad))).toBe(false);
    }
  });

  it('rejects truncated, extended, re-cased and padded keys', () => {
    const { key } = generateKey();
    expect(isWellFormedKey(key.slice(0, -1))).toBe(false);
    expect(isWellFormedKey(`${key}2`)).toBe(false);
    expect(isWellFormedKey(key.toUpperCase())).toBe(false);
    expect(isWellFormedKey(` ${key}`)).toBe(false);
    expect(isWellFormedKey(`${key}\n`)).toBe(false);
    expect(isWellFormedKey(`Bearer ${key}`)).toBe(false);
  });

  it('rejects junk, the wrong prefix and too-short strings', () => {
    const { key } = generateKey();
    const rest = key.slice(KEY_PREFIX.length);
    for (const junk of [
      '',
      'gg_',
      'gg_abc',
      `gg_${'A'.repeat(19)}`,
      `GG_${rest}`,
      `gg-${rest}`,
      `sk_${rest}`,
      `sk-${rest}`,
      rest,
      'sk-proj-abcdefghijklmnopqrstuvwxyz0123456789',
      `gg_${'1'.repeat(40)}`,
    ]) {
      expect(isWellFormedKey(junk), JSON.stringify(junk)).toBe(false);
    }
  });

  it('rejects a body with a checksum that is valid for a different body', () => {
    const a = generateKey().key;
    const b = generateKey().key;
    const swapped = `${KEY_PREFIX}${split(a).body}${split(b).check}`;
    expect(isWellFormedKey(swapped)).toBe(false);
  });
});

describe('hashKey', () => {
  it('is the SHA-256 hex digest of the whole key', () => {
    expect(hashKey('abc')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    const { key } = generateKey();
    expect(hashKey(key)).toBe(createHash('sha256').update(key, 'utf8').digest('hex'));
    expect(hashKey(key)).toMatch(/^[0-9a-f]{64}$/);
  });

  it('differs for keys that differ in one character', () => {
    const { key } = generateKey();
    expect(hashKey(replaceAt(key, 10, otherChar(key[10]!)))).not.toBe(hashKey(key));
  });
});

describe('displayPrefix', () => {
  it('is gg_ plus six characters, and is not enough to authenticate', () => {
    const { key, hash } = generateKey();
    const prefix = displayPrefix(key);
    expect(prefix).toHaveLength(KEY_PREFIX.length + 6);
    expect(key.startsWith(prefix)).toBe(true);
    // Neither the format check nor the stored hash can be satisfied by the prefix alone.
    expect(isWellFormedKey(prefix)).toBe(false);
    expect(hashKey(prefix)).not.toBe(hash);
    // The prefix reveals 6 of the body's ~33 random characters; the rest stays secret.
    expect(split(key).body.length - 6).toBeGreaterThanOrEqual(22);
  });

  it('a well-formed key forged behind a known prefix has a different hash', () => {
    const { key } = generateKey();
    // Forge a different body behind the same prefix, with a correct checksum for that body.
    const prefix = displayPrefix(key);
    const forgedBody = `${prefix.slice(KEY_PREFIX.length)}${'z'.repeat(split(key).body.length - 6)}`;
    const digest = createHash('sha256').update(forgedBody).digest();
    let n = BigInt(digest.readUInt32BE(0));
    let check = '';
    while (n > 0n) {
      check = ALPHABET[Number(n % 58n)] + check;
      n /= 58n;
    }
    const forged = `${KEY_PREFIX}${forgedBody}${check.padStart(CHECKSUM_LEN, '1')}`;
    expect(isWellFormedKey(forged)).toBe(true);
    expect(displayPrefix(forged)).toBe(prefix);
    expect(hashKey(forged)).not.toBe(hashKey(key));
  });
});

describe('findKeysInText', () => {
  it('finds real keys in prose, code and URLs', () => {
    const a = generateKey().key;
    const b = generateKey().key;
    const c = generateKey().key;
    const text = [
      `Hey mods, I think I leaked my key: ${a}. Can you revoke it?`,
      'Here is my config:',
      '```js',
      `const client = new OpenAI({ apiKey: "${b}" });`,
      '```',
      `curl https://relay.example.org/v1/models?key=${c}&x=1`,
    ].join('\n');
    expect(findKeysInText(text).sort()).toEqual([a, b, c].sort());
  });

  it('ignores look-alikes with bad checksums and other providers keys', () => {
    const real = generateKey().key;
    const typo = replaceAt(real, 12, otherChar(real[12]!));
    const random = `gg_${Array.from({ length: 39 }, () => ALPHABET[randomInt(58)]).join('')}`;
    const text = `typo ${typo}; random ${random}; openai sk-proj-${'a'.repeat(40)}; short gg_abc; real (${real})`;
    expect(findKeysInText(text)).toEqual([real]);
  });

  it('finds nothing in text without keys', () => {
    expect(findKeysInText('')).toEqual([]);
    expect(findKeysInText('the gg_ prefix is documented in the README')).toEqual([]);
  });
});
