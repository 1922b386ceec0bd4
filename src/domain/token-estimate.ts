// Token estimates for reserving budget before a call and for settling when an upstream reports no
// usage. Follows OpenAI's documented chat overhead: ~3 tokens per message plus 3 to prime the reply.
import type { Tokenizer } from './ports.js';

const PER_MESSAGE = 3;
const REPLY_PRIMING = 3;
/** A low-detail image costs 85 tokens; we have no image size here, so count that. */
const PER_IMAGE = 85;

function contentText(content: unknown, tok: Tokenizer): number {
  if (typeof content === 'string') return tok.count(content);
  if (!Array.isArray(content)) return 0;
  let n = 0;
  for (const part of content) {
    if (part && typeof part === 'object') {
      const p = part as Record<string, unknown>;
      if (typeof p.text === 'string') n += tok.count(p.text);
      else if (p.type === 'image_url' || p.type === 'input_image') n += PER_IMAGE;
    }
  }
  return n;
}

export function estimateChatPrompt(messages: unknown[], tok: Tokenizer, extra?: unknown): number {
  let n = REPLY_PRIMING;
  for (const m of messages) {
    if (!m || typeof m !== 'object') continue;
    const msg = m as Record<string, unknown>;
    n += PER_MESSAGE + contentText(msg.content, tok);
    if (typeof msg.name === 'string') n += 1 + tok.count(msg.name);
    if (msg.tool_calls !== undefined) n += tok.count(JSON.stringify(msg.tool_calls));
  }
  // Tool and function schemas count against the prompt too.
  if (extra !== undefined) n += tok.count(JSON.stringify(extra));
  return n;
}

/** `prompt` of /completions and `input` of /embeddings: a string, an array of strings, or token arrays. */
export function estimateTextInput(input: unknown, tok: Tokenizer): number {
  if (typeof input === 'string') return tok.count(input);
  if (!Array.isArray(input)) return 0;
  let n = 0;
  for (const item of input) {
    if (typeof item === 'string') n += tok.count(item);
    else if (typeof item === 'number') n += 1;
    else if (Array.isArray(item)) n += item.length;
  }
  return n;
}
