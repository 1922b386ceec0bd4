// A new key waits in the session between the POST that made it and the dashboard that shows it once.
// It is sealed (AES-256-GCM under a key derived from the session secret), so the session store, a
// SQLite file or Redis, never holds it in the clear, and it is good for a few minutes only.
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';

/** Longest a sealed key is shown after it was made (a lost redirect must not leave it lying around). */
export const KEY_FLASH_MS = 5 * 60_000;

const IV_BYTES = 12;
const TAG_BYTES = 16;

export class KeySealer {
  readonly #key: Buffer;

  constructor(sessionSecret: string) {
    this.#key = Buffer.from(hkdfSync('sha256', sessionSecret, 'guildgate', 'web key flash', 32));
  }

  seal(rawKey: string): string {
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', this.#key, iv);
    const body = Buffer.concat([cipher.update(rawKey, 'utf8'), cipher.final()]);
    return Buffer.concat([iv, cipher.getAuthTag(), body]).toString('base64url');
  }

  /** The key, or null when the box was not sealed by this secret (rotated secret, tampering). */
  open(sealed: string): string | null {
    const box = Buffer.from(sealed, 'base64url');
    if (box.length <= IV_BYTES + TAG_BYTES) return null;
    try {
      const decipher = createDecipheriv('aes-256-gcm', this.#key, box.subarray(0, IV_BYTES));
      decipher.setAuthTag(box.subarray(IV_BYTES, IV_BYTES + TAG_BYTES));
      return Buffer.concat([decipher.update(box.subarray(IV_BYTES + TAG_BYTES)), decipher.final()]).toString('utf8');
    } catch {
      return null;
    }
  }
}
