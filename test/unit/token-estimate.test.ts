// Prompt token estimates (src/domain/token-estimate.ts). A word-counting tokenizer makes the
// expected numbers readable; the real o200k tokenizer checks the estimate on realistic input.
import { describe, expect, it } from 'vitest';
import { o200kTokenizer } from '../../src/adapters/tokenizer.js';
import type { Tokenizer } from '../../src/domain/ports.js';
import { estimateChatPrompt, estimateTextInput } from '../../src/domain/token-estimate.js';

/** One token per whitespace-separated word. */
const words: Tokenizer = { count: (text) => text.split(/\s+/).filter(Boolean).length };

// OpenAI's documented chat overhead: 3 tokens per message, 3 to prime the reply.
const PER_MESSAGE = 3;
const PRIMING = 3;
const IMAGE = 85;

describe('estimateChatPrompt', () => {
  it('counts string contents plus per-message and reply overhead', () => {
    expect(estimateChatPrompt([], words)).toBe(PRIMING);
    expect(estimateChatPrompt([{ role: 'user', content: 'one two three' }], words)).toBe(PRIMING + PER_MESSAGE + 3);
    const messages = [
      { role: 'system', content: 'be brief' },
      { role: 'user', content: 'hello there friend' },
      { role: 'assistant', content: 'hi' },
    ];
    expect(estimateChatPrompt(messages, words)).toBe(PRIMING + 3 * PER_MESSAGE + 2 + 3 + 1);
  });

  it('counts the text parts of content-part arrays', () => {
    const messages = [
      {
        role: 'user',
        content: [
          { type: 'text', text: 'describe this' },
          { type: 'text', text: 'in three words' },
        ],
      },
    ];
    expect(estimateChatPrompt(messages, words)).toBe(PRIMING + PER_MESSAGE + 5);
  });

  it('counts each image a flat 85 tokens, whatever the size of its URL', () => {
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
    expect(estimateChatPrompt(messages, words)).toBe(PRIMING + PER_MESSAGE + 3 + 2 * IMAGE);
    // The real tokenizer must not be fed the base64 either.
    expect(estimateChatPrompt(messages, o200kTokenizer)).toBeLessThan(PRIMING + PER_MESSAGE + 20 + 2 * IMAGE);
  });

  it('adds a token plus the name for named messages', () => {
    const messages = [{ role: 'user', name: 'ada lovelace', content: 'hi' }];
    expect(estimateChatPrompt(messages, words)).toBe(PRIMING + PER_MESSAGE + 1 + 1 + 2);
  });

  it('counts assistant tool calls (with null content) and the tool schemas', () => {
    const toolCalls = [
      { id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city": "Paris"}' } },
    ];
    const tools = [
      {
        type: 'function',
        function: {
          name: 'get_weather',
          description: 'Weather for a city right now',
          parameters: { type: 'object', properties: { city: { type: 'string' } } },
        },
      },
    ];
    const messages = [
      { role: 'user', content: 'weather in Paris' },
      { role: 'assistant', content: null, tool_calls: toolCalls },
      { role: 'tool', tool_call_id: 'call_1', content: 'sunny' },
    ];
    const callTokens = words.count(JSON.stringify(toolCalls));
    const toolTokens = words.count(JSON.stringify(tools));
    expect(callTokens).toBeGreaterThan(0);
    expect(toolTokens).toBeGreaterThan(1);
    expect(estimateChatPrompt(messages, words)).toBe(PRIMING + 3 * PER_MESSAGE + 3 + callTokens + 1);
    expect(estimateChatPrompt(messages, words, tools)).toBe(
      PRIMING + 3 * PER_MESSAGE + 3 + callTokens + 1 + toolTokens,
    );
  });

  it('gives tool schemas weight with the real tokenizer', () => {
    const messages = [{ role: 'user', content: 'hi' }];
    const tools = [{ type: 'function', function: { name: 'lookup', parameters: { type: 'object', properties: {} } } }];
    const without = estimateChatPrompt(messages, o200kTokenizer);
    expect(estimateChatPrompt(messages, o200kTokenizer, tools)).toBeGreaterThan(without + 10);
  });

  it('skips what is not a message or not countable content instead of throwing', () => {
    const messages = [
      null,
      'text',
      42,
      { role: 'user', content: { weird: true } },
      { role: 'user', content: [null, 7, { type: 'input_audio' }] },
    ];
    expect(estimateChatPrompt(messages as unknown[], words)).toBe(PRIMING + 2 * PER_MESSAGE);
  });

  it('grows with the prompt under the real tokenizer', () => {
    const sentence = 'The quick brown fox jumps over the lazy dog. ';
    const short = estimateChatPrompt([{ role: 'user', content: sentence }], o200kTokenizer);
    const long = estimateChatPrompt([{ role: 'user', content: sentence.repeat(100) }], o200kTokenizer);
    expect(short).toBeGreaterThan(PRIMING + PER_MESSAGE + 5);
    expect(long - (PRIMING + PER_MESSAGE)).toBeGreaterThan(90 * (short - PRIMING - PER_MESSAGE));
  });
});

describe('estimateTextInput', () => {
  it('counts a string', () => {
    expect(estimateTextInput('one two three', words)).toBe(3);
    expect(estimateTextInput('', words)).toBe(0);
    expect(estimateTextInput('hello world', o200kTokenizer)).toBe(2);
  });

  it('sums an array of strings', () => {
    expect(estimateTextInput(['one two', 'three', ''], words)).toBe(3);
  });

  it('counts a token array one per token', () => {
    expect(estimateTextInput([1212, 318, 257, 1332], words)).toBe(4);
  });

  it('counts an array of token arrays by their lengths', () => {
    expect(estimateTextInput([[1, 2, 3], [4], []], words)).toBe(4);
  });

  it('counts nothing for input it does not understand', () => {
    expect(estimateTextInput(undefined, words)).toBe(0);
    expect(estimateTextInput(42, words)).toBe(0);
    expect(estimateTextInput({ text: 'a b c' }, words)).toBe(0);
    expect(estimateTextInput([null, { text: 'a b' }], words)).toBe(0);
  });
});

describe('o200kTokenizer on very long text', () => {
  it('scales a tokenized prefix instead of tokenizing megabytes', () => {
    const unit = 'The guild meets on Fridays to build small tools together. ';
    const long = unit.repeat(20_000); // ~1.2 MB
    const exactPerUnit = o200kTokenizer.count(unit.repeat(100)) / 100;
    const estimate = o200kTokenizer.count(long);
    expect(estimate).toBeGreaterThan(exactPerUnit * 20_000 * 0.9);
    expect(estimate).toBeLessThan(exactPerUnit * 20_000 * 1.1);
  });
});
