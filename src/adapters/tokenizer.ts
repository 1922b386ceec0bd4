// o200k_base (GPT-4o family) via gpt-tokenizer: pure JS, no native build, no download at run time.
import { countTokens } from 'gpt-tokenizer/encoding/o200k_base';
import type { Tokenizer } from '../domain/ports.js';

/**
 * Past this many characters only a prefix is tokenized and the count is scaled by UTF-8 length:
 * exact BPE on megabytes of text would block the event loop for seconds, and the count only sizes
 * a reservation that the provider's own usage then replaces.
 */
const EXACT_CHARS = 32 * 1024;

export const o200kTokenizer: Tokenizer = {
  count(text) {
    if (!text) return 0;
    if (text.length <= EXACT_CHARS) return countTokens(text);
    const prefix = text.slice(0, EXACT_CHARS);
    const ratio = Buffer.byteLength(text) / Buffer.byteLength(prefix);
    return Math.ceil(countTokens(prefix) * ratio);
  },
};
