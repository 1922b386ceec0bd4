// The prompt estimate the relay reserves for a chat request, for tests that check reservations.
import { o200kTokenizer } from '../../src/adapters/tokenizer.js';
import { estimateChatPrompt, TokenMeter } from '../../src/domain/token-estimate.js';

/** Default `imageTokens` of a model (src/config/schema.ts). */
export const DEFAULT_IMAGE_TOKENS = 1_445;

/** Exact for short prompts, as the relay's is (its time allowance only matters for long ones). */
export function chatPromptEstimate(messages: unknown[]): number {
  const meter = new TokenMeter(o200kTokenizer, { budgetMs: Number.POSITIVE_INFINITY, clock: () => 0 });
  return estimateChatPrompt({ messages }, meter, { imageTokens: DEFAULT_IMAGE_TOKENS });
}
