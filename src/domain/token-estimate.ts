// Prompt token estimates that size a request's budget reservation. Each one is an upper bound on
// what the provider can bill for the input, computed in bounded CPU time: text is tokenized exactly
// in short pieces while the request's time allowance lasts, and the rest is counted as UTF-8 bytes
// (a byte-level BPE token is at least one byte, so no tokenizer of that family can exceed it).
// The provider's own `usage` replaces the estimate when the request settles.
import { InvalidRequestError } from './errors.js';
import type { Tokenizer } from './ports.js';

/** OpenAI's documented chat overhead: ~3 tokens per message plus 3 to prime the reply. */
const PER_MESSAGE = 3;
const REPLY_PRIMING = 3;
/**
 * Longest piece given to the tokenizer at once. BPE cost grows faster than linearly with the length
 * of a run without spaces (32K CJK characters in one piece take seconds), so runs are cut.
 */
const PIECE_CHARS = 256;
/** Tokens added per cut: the tokens on either side of a cut may merge differently than across it. */
const CUT_SLACK = 1;

export interface MeterOptions {
  /** Milliseconds of exact tokenizing one request may spend in all; the rest is counted as bytes. */
  budgetMs: number;
  /** Monotonic clock in milliseconds. */
  clock: () => number;
}

/** Counts the tokens of one request's text, exact while its time allowance lasts, bounded after. */
export class TokenMeter {
  #spentMs = 0;

  constructor(
    private readonly tok: Tokenizer,
    private readonly opts: MeterOptions,
  ) {}

  /** True once the allowance ran out and text is being counted as bytes. */
  get bounded(): boolean {
    return this.#spentMs >= this.opts.budgetMs;
  }

  text(s: string): number {
    let n = 0;
    let at = 0;
    while (at < s.length) {
      if (this.bounded) return n + Buffer.byteLength(at === 0 ? s : s.slice(at));
      const end = pieceEnd(s, at);
      const started = this.opts.clock();
      n += this.tok.count(s.slice(at, end));
      this.#spentMs += this.opts.clock() - started;
      if (end < s.length) n += CUT_SLACK;
      at = end;
    }
    return n;
  }

  /** Any JSON value (tool schemas, tool calls) counted as its serialized text. */
  json(value: unknown): number {
    if (value === undefined || value === null) return 0;
    return this.text(typeof value === 'string' ? value : JSON.stringify(value));
  }
}

/** End of the piece starting at `at`: before a whitespace in the second half of the window if there is one. */
function pieceEnd(s: string, at: number): number {
  const limit = at + PIECE_CHARS;
  if (limit >= s.length) return s.length;
  for (let i = limit; i > at + PIECE_CHARS / 2; i--) {
    const c = s.charCodeAt(i);
    if (c === 32 || c === 10 || c === 9 || c === 13) return i;
  }
  // Never split a surrogate pair: half a character would be counted as a replacement character.
  const c = s.charCodeAt(limit - 1);
  return c >= 0xd800 && c <= 0xdbff ? limit + 1 : limit;
}

export interface ChatPromptOptions {
  /** Most tokens the model bills for one image input (high detail, largest size). */
  imageTokens: number;
}

/** Request fields besides `messages` that the provider renders into the prompt. */
const PROMPT_FIELDS = ['tools', 'functions', 'tool_choice', 'function_call', 'response_format', 'prediction'] as const;

function unsupportedPart(path: string, type: unknown): InvalidRequestError {
  return new InvalidRequestError(
    `Unsupported content part type ${JSON.stringify(type)} at '${path}'. This relay accepts text, image_url and input_audio parts.`,
    path,
    'unsupported_content_part',
  );
}

function contentTokens(content: unknown, meter: TokenMeter, opts: ChatPromptOptions, path: string): number {
  if (typeof content === 'string') return meter.text(content);
  if (!Array.isArray(content)) return meter.json(content);
  let n = 0;
  content.forEach((part, i) => {
    const p = (part ?? {}) as Record<string, unknown>;
    if (p.type === 'text' && typeof p.text === 'string') n += meter.text(p.text);
    else if (p.type === 'image_url' || p.type === 'input_image') n += opts.imageTokens;
    // Audio is billed by duration, far below one token per byte of its base64 data.
    else if (p.type === 'input_audio') n += meter.json(p.input_audio);
    else throw unsupportedPart(`${path}[${i}].type`, p.type);
  });
  return n;
}

/** Upper bound on the prompt tokens of a chat completion request (validated body). */
export function estimateChatPrompt(
  body: { messages: unknown[] } & Record<string, unknown>,
  meter: TokenMeter,
  opts: ChatPromptOptions,
): number {
  let n = REPLY_PRIMING;
  body.messages.forEach((m, i) => {
    const msg = m as Record<string, unknown>;
    n += PER_MESSAGE + contentTokens(msg.content, meter, opts, `messages[${i}].content`);
    // name, tool_calls, tool_call_id...: a token for the field plus its serialized value.
    for (const field in msg) if (field !== 'role' && field !== 'content') n += 1 + meter.json(msg[field]);
  });
  for (const field of PROMPT_FIELDS) n += meter.json(body[field]);
  return n;
}

export interface TextInputEstimate {
  tokens: number;
  /** Separate inputs: each prompt of a legacy completion gets its own `n` completions. */
  inputs: number;
}

/**
 * `prompt` of /completions and `input` of /embeddings: a string, an array of strings, an array of
 * token ids, or an array of token-id arrays (validated body).
 */
export function estimateTextInput(input: unknown, meter: TokenMeter): TextInputEstimate {
  if (typeof input === 'string') return { tokens: meter.text(input), inputs: 1 };
  if (!Array.isArray(input) || input.length === 0) return { tokens: 0, inputs: 1 };
  if (typeof input[0] === 'number') return { tokens: input.length, inputs: 1 };
  let tokens = 0;
  for (const item of input) tokens += typeof item === 'string' ? meter.text(item) : (item as unknown[]).length;
  return { tokens, inputs: input.length };
}
