import { describe, expect, it } from 'vitest';
import { encodeSse, type SseEvent, SseParser } from '../../src/domain/sse.js';

const utf8 = new TextEncoder();

function parseChunks(chunks: Array<Uint8Array | string>): SseEvent[] {
  const parser = new SseParser();
  return [...chunks.flatMap((c) => parser.push(c)), ...parser.end()];
}

const chunk = (content: string, extra = '') =>
  `data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":${JSON.stringify(content)}},"finish_reason":null}]${extra}}\n\n`;

// Shaped like a real OpenAI stream, plus a keep-alive comment and multi-byte text.
const OPENAI_STREAM = [
  ': keep-alive\n\n',
  chunk('Grüße'),
  chunk(' 日本'),
  chunk(' 😀€'),
  'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":3,"total_tokens":6}}\n\n',
  'data: [DONE]\n\n',
].join('');

describe('SseParser', () => {
  const whole = parseChunks([utf8.encode(OPENAI_STREAM)]);

  it('parses a realistic OpenAI stream', () => {
    expect(
      whole.map((e) => (e.data.startsWith('{') ? (JSON.parse(e.data).choices[0]?.delta.content ?? 'usage') : e.data)),
    ).toEqual(['Grüße', ' 日本', ' 😀€', 'usage', '[DONE]']);
    expect(whole.every((e) => e.event === null && e.id === null)).toBe(true);
  });

  it('yields the same events fed byte by byte', () => {
    const bytes = utf8.encode(OPENAI_STREAM);
    expect(parseChunks(Array.from(bytes, (b) => Uint8Array.of(b)))).toEqual(whole);
  });

  it('yields the same events for every two-piece split', () => {
    const bytes = utf8.encode(OPENAI_STREAM);
    for (let i = 1; i < bytes.length; i++) {
      expect(parseChunks([bytes.subarray(0, i), bytes.subarray(i)])).toEqual(whole);
    }
  });

  it('reassembles a UTF-8 character split across chunks', () => {
    const bytes = utf8.encode('data: 😀€\n\n');
    // Split inside the 4-byte emoji and again inside the 3-byte euro sign.
    const events = parseChunks([bytes.subarray(0, 8), bytes.subarray(8, 12), bytes.subarray(12)]);
    expect(events).toEqual([{ event: null, data: '😀€', id: null }]);
  });

  it('returns an event as soon as its blank line arrives', () => {
    const parser = new SseParser();
    expect(parser.push('data: a\n')).toEqual([]);
    expect(parser.push('\n')).toEqual([{ event: null, data: 'a', id: null }]);
  });

  it('accepts CRLF, CR and LF line endings, mixed', () => {
    expect(parseChunks(['data: a\r\n\r\ndata: b\r\rdata: c\n\ndata: d\r\n\n'])).toEqual(
      ['a', 'b', 'c', 'd'].map((data) => ({ event: null, data, id: null })),
    );
  });

  it('treats a CRLF split between chunks as one line ending', () => {
    expect(parseChunks(['data: a\r', '\ndata: b\r', '\n\r', '\n'])).toEqual([{ event: null, data: 'a\nb', id: null }]);
  });

  it('ignores comments', () => {
    expect(parseChunks([': ping\n\n:\ndata: x\n: inside\n\n'])).toEqual([{ event: null, data: 'x', id: null }]);
  });

  it('joins multi-line data and strips only one leading space', () => {
    expect(parseChunks(['data: one\ndata:two\ndata:  three\ndata\ndata: \n\n'])).toEqual([
      { event: null, data: 'one\ntwo\n three\n\n', id: null },
    ]);
  });

  it('dispatches an empty data field but not a block without data', () => {
    expect(parseChunks(['event: lonely\n\ndata:\n\n'])).toEqual([{ event: null, data: '', id: null }]);
  });

  it('reads event types and keeps the last event id across events', () => {
    expect(
      parseChunks(['event: error\nid: 7\ndata: x\n\ndata: y\n\nid: bad\0id\ndata: z\n\nevent:\ndata: w\n\n']),
    ).toEqual([
      { event: 'error', data: 'x', id: '7' },
      { event: null, data: 'y', id: '7' },
      { event: null, data: 'z', id: '7' },
      { event: null, data: 'w', id: '7' },
    ]);
  });

  it('ignores retry and unknown fields', () => {
    expect(parseChunks(['retry: 1000\nfoo: bar\ndata: x\n\n'])).toEqual([{ event: null, data: 'x', id: null }]);
  });

  it('strips one leading BOM from bytes or text', () => {
    const bytes = utf8.encode('\uFEFFdata: a\n\n');
    expect(parseChunks([bytes.subarray(0, 2), bytes.subarray(2)])).toEqual([{ event: null, data: 'a', id: null }]);
    // Only the first BOM is a BOM; a second one makes the first line an unknown field.
    expect(parseChunks(['\uFEFF\uFEFFdata: a\n\ndata: b\n\n'])).toEqual([{ event: null, data: 'b', id: null }]);
  });

  it('drops an event that lacks its final blank line at end()', () => {
    const parser = new SseParser();
    expect(parser.push('data: complete\n\ndata: partial\n')).toEqual([{ event: null, data: 'complete', id: null }]);
    expect(parser.end()).toEqual([]);
    const unterminated = new SseParser();
    expect(unterminated.push('data: no newline at all')).toEqual([]);
    expect(unterminated.end()).toEqual([]);
  });

  it('starts fresh after end()', () => {
    const parser = new SseParser();
    parser.push('id: 1\ndata: left over');
    parser.end();
    expect(parser.push('data: new\n\n')).toEqual([{ event: null, data: 'new', id: null }]);
  });
});

describe('encodeSse', () => {
  it('frames data as one event', () => {
    expect(encodeSse('[DONE]')).toBe('data: [DONE]\n\n');
  });

  it('round-trips through the parser, line breaks included', () => {
    const payloads = ['{"a":1}', 'two\nlines', 'cr\rand\r\ncrlf', 'data: injected\n\nevent: x'];
    const events = parseChunks(payloads.map(encodeSse));
    expect(events.map((e) => e.data)).toEqual(['{"a":1}', 'two\nlines', 'cr\nand\ncrlf', 'data: injected\n\nevent: x']);
    expect(events.every((e) => e.event === null)).toBe(true);
  });
});
