// Prompt token estimates (src/domain/token-estimate.ts) with the real o200k tokenizer. Every
// estimate must be an upper bound of the exact count, and the work per request must stop at its
// allowance (measured with an injected clock, so nothing here depends on the machine's speed).
import { countTokens } from 'gpt-tokenizer/encoding/o200k_base';
import { describe, expect, it } from 'vitest';
import { o200kTokenizer } from '../../src/adapters/tokenizer.js';
import { InvalidRequestError } from '../../src/domain/errors.js';
import { estimateChatPrompt, estimateTextInput, TokenMeter } from '../../src/domain/token-estimate.js';

// OpenAI's documented chat overhead: 3 tokens per message, 3 to prime the reply.
const PER_MESSAGE = 3;
const PRIMING = 3;
const IMAGE = 1_445;
const opts = { imageTokens: IMAGE };
const tok = (s: string) => o200kTokenizer.count(s);

/** A meter with all the time in the world: exact counts (plus cut slack on long text). */
const unbounded = () => new TokenMeter(o200kTokenizer, { budgetMs: Number.POSITIVE_INFINITY, clock: () => 0 });
/** A meter whose clock advances `stepMs` each time it is read. */
function stepping(budgetMs: number, stepMs: number) {
  let t = 0;
  let reads = 0;
  const meter = new TokenMeter(o200kTokenizer, {
    budgetMs,
    clock: () => {
      reads++;
      t += stepMs;
      return t;
    },
  });
  return { meter, reads: () => reads };
}
const cjk = (n: number, from = 0) =>
  Array.from({ length: n }, (_, i) => String.fromCharCode(0x4e00 + (((from + i) * 7919) % 20_000))).join('');

describe('TokenMeter', () => {
  it('counts short text exactly', () => {
    const m = unbounded();
    expect(m.text('hello world')).toBe(2);
    expect(m.text('')).toBe(0);
    expect(m.bounded).toBe(false);
  });

  it('is an upper bound on adversarial text: long runs of spaces, CJK, and both', () => {
    for (const text of [' '.repeat(4_000), cjk(3_000), `${' '.repeat(2_000)}${cjk(3_000)}`, `${'a'.repeat(3_000)}🙂`]) {
      const exact = countTokens(text);
      expect(unbounded().text(text)).toBeGreaterThanOrEqual(exact);
      // With no allowance at all the count is the UTF-8 byte length, also an upper bound.
      const none = new TokenMeter(o200kTokenizer, { budgetMs: 0, clock: () => 0 });
      expect(none.text(text)).toBe(Buffer.byteLength(text));
      expect(none.text(text)).toBeGreaterThanOrEqual(exact);
    }
  });

  it('stays close to the exact count on ordinary prose', () => {
    const prose = 'The guild meets on Fridays to build small tools together. '.repeat(200);
    const exact = countTokens(prose);
    const estimate = unbounded().text(prose);
    expect(estimate).toBeGreaterThanOrEqual(exact);
    expect(estimate).toBeLessThan(exact * 1.1);
  });

  it('stops tokenizing when its allowance is spent and counts the rest as bytes', () => {
    // 2 ms allowance; the clock advances 1 ms per read and is read around each 256-character piece.
    const { meter, reads } = stepping(2, 1);
    const text = cjk(10_000);
    const n = meter.text(text);
    expect(meter.bounded).toBe(true);
    expect(reads()).toBe(4);
    const [first, second] = [text.slice(0, 256), text.slice(256, 512)];
    expect(n).toBe(countTokens(first) + 1 + countTokens(second) + 1 + Buffer.byteLength(text.slice(512)));
    // Once spent, later text of the same request goes straight to bytes.
    expect(meter.text('hello world')).toBe(11);
  });

  it('never splits a surrogate pair between two pieces', () => {
    const text = `${'x'.repeat(255)}🙂${'y'.repeat(10)}`;
    expect(unbounded().text(text)).toBeGreaterThanOrEqual(countTokens(text));
  });
});

describe('estimateChatPrompt', () => {
  it('counts string contents plus per-message and reply overhead', () => {
    const m = unbounded();
    expect(estimateChatPrompt({ messages: [] }, m, opts)).toBe(PRIMING);
    const messages = [
      { role: 'system', content: 'be brief' },
      { role: 'user', content: 'hello there friend' },
    ];
    expect(estimateChatPrompt({ messages }, m, opts)).toBe(
      PRIMING + 2 * PER_MESSAGE + tok('be brief') + tok('hello there friend'),
    );
  });

  it('counts text parts, and each image at the model’s largest image cost', () => {
    const huge = `data:image/png;base64,${'iVBORw0KGgo'.repeat(100_000)}`;
    const messages = [
      {
        role: 'user',
        content: [
          { type: 'text', text: 'what is this' },
          { type: 'image_url', image_url: { url: huge, detail: 'high' } },
          { type: 'input_image', image_url: 'https://example.org/cat.png' },
        ],
      },
    ];
    expect(estimateChatPrompt({ messages }, unbounded(), opts)).toBe(
      PRIMING + PER_MESSAGE + tok('what is this') + 2 * IMAGE,
    );
  });

  it('refuses content parts it cannot bound, naming the part', () => {
    const messages = [
      {
        role: 'user',
        content: [
          { type: 'text', text: 'hi' },
          { type: 'file', file: { file_id: 'f' } },
        ],
      },
    ];
    try {
      estimateChatPrompt({ messages }, unbounded(), opts);
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(InvalidRequestError);
      expect((err as InvalidRequestError).param).toBe('messages[0].content[1].type');
    }
  });

  it('counts names, tool calls and every prompt-rendered request field', () => {
    const toolCalls = [
      { id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city": "Paris"}' } },
    ];
    const tools = [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object' } } }];
    const responseFormat = { type: 'json_schema', json_schema: { name: 'w', schema: { type: 'object' } } };
    const messages = [
      { role: 'user', name: 'ada', content: 'weather in Paris' },
      { role: 'assistant', content: null, tool_calls: toolCalls },
      { role: 'tool', tool_call_id: 'call_1', content: 'sunny' },
    ];
    const base =
      PRIMING +
      3 * PER_MESSAGE +
      tok('weather in Paris') +
      (1 + tok('ada')) +
      (1 + tok(JSON.stringify(toolCalls))) +
      (1 + tok('call_1')) +
      tok('sunny');
    expect(estimateChatPrompt({ messages }, unbounded(), opts)).toBe(base);
    expect(estimateChatPrompt({ messages, tools, response_format: responseFormat }, unbounded(), opts)).toBe(
      base + tok(JSON.stringify(tools)) + tok(JSON.stringify(responseFormat)),
    );
  });

  it('bounds a request of 32K spaces followed by 60K CJK characters (once estimated at 1,663 tokens)', () => {
    const content = `${' '.repeat(32_768)}${cjk(60_000)}`;
    const { meter } = stepping(2, 0.5);
    const estimate = estimateChatPrompt({ messages: [{ role: 'user', content }] }, meter, opts);
    // Its exact o200k count is 114,230 (counting it in one piece takes about 16 s, so it is not redone here).
    expect(estimate).toBeGreaterThanOrEqual(114_230);
  });
});

describe('estimateTextInput', () => {
  it('counts a string as one input', () => {
    expect(estimateTextInput('hello world', unbounded())).toEqual({ tokens: 2, inputs: 1 });
    expect(estimateTextInput('', unbounded())).toEqual({ tokens: 0, inputs: 1 });
  });

  it('sums an array of strings, one input each', () => {
    expect(estimateTextInput(['hello world', 'hi', ''], unbounded())).toEqual({ tokens: 3, inputs: 3 });
  });

  it('counts a token array one per token, as one input', () => {
    expect(estimateTextInput([1212, 318, 257, 1332], unbounded())).toEqual({ tokens: 4, inputs: 1 });
  });

  it('counts an array of token arrays by their lengths, one input each', () => {
    expect(estimateTextInput([[1, 2, 3], [4], []], unbounded())).toEqual({ tokens: 4, inputs: 3 });
  });
});
