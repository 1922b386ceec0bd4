// o200k_base (GPT-4o family) via gpt-tokenizer: pure JS, no native build, no download at run time.
// Exact counts; callers bound the work per request (see TokenMeter in src/domain/token-estimate.ts).
import { countTokens } from 'gpt-tokenizer/encoding/o200k_base';
import type { Tokenizer } from '../domain/ports.js';

export const o200kTokenizer: Tokenizer = {
  count: (text) => (text ? countTokens(text) : 0),
};
