// The hostile requests of `npm run bench:stall`: each one a JSON body as close to the body limit as
// it gets without going over. Shared by the bench (names, paths, expectations) and its client
// process (which builds the bodies, so that work never runs on the measured event loop).

export type KeyName = 'generous' | 'rpm' | 'budget';

export interface StallCase {
  id: string;
  label: string;
  path: string;
  key: KeyName;
  /** Statuses that count as the expected answer. */
  expect: number[];
  body(limit: number): string;
}

const CJK_FIRST = 0x4e00;
const CJK_COUNT = 0x9fff - CJK_FIRST + 1;
let cycle: string | undefined;

/** `n` CJK ideographs (3 UTF-8 bytes each) from `offset` on, cycling through U+4E00..U+9FFF. */
export function cjk(n: number, offset = 0): string {
  cycle ??= String.fromCharCode(...Array.from({ length: CJK_COUNT }, (_, i) => CJK_FIRST + i));
  const start = offset % CJK_COUNT;
  return cycle.repeat(Math.ceil((start + n) / CJK_COUNT)).slice(start, start + n);
}

/**
 * The largest `make(n)` within `limit` bytes, for bodies whose size grows by about `unitBytes` per
 * unit of `n` (the estimate is corrected downwards until it fits).
 */
function fill(limit: number, unitBytes: number, make: (n: number) => unknown): string {
  const base = Buffer.byteLength(JSON.stringify(make(0)));
  let n = Math.floor((limit - base) / unitBytes);
  for (;;) {
    const body = JSON.stringify(make(n));
    if (Buffer.byteLength(body) <= limit || n === 0) return body;
    n -= Math.ceil((Buffer.byteLength(body) - limit) / unitBytes);
  }
}

const MODEL = 'gpt-4o-mini';
const chat = (messages: unknown[]) => ({ model: MODEL, messages, max_tokens: 16 });
const user = (content: string) => ({ role: 'user', content });

/** `n` characters of distinct CJK text split over `parts` strings. */
function cjkParts(n: number, parts: number): string[] {
  const each = Math.floor(n / parts);
  return Array.from({ length: parts }, (_, i) => cjk(i === 0 ? n - each * (parts - 1) : each, i * each));
}
const cjkMessages = (n: number, parts: number) => cjkParts(n, parts).map(user);

/** `n` short strings of 4 distinct CJK characters (`"…",` is 15 bytes). */
const shortStrings = (n: number) => Array.from({ length: n }, (_, i) => cjk(4, i * 4));

const SPACES_FIRST = 32 * 1024;
/** OpenAI's cap on messages, prompts and embeddings inputs of one request. */
const MAX_INPUTS = 2048;
/** Lists longer than the cap get 400 before they are walked; g2, h2 and i2 stay within it. */
const CAPPED = [400];

export const CASES: StallCase[] = [
  {
    id: 'a',
    label: '1 message of CJK',
    path: '/v1/chat/completions',
    key: 'generous',
    expect: [200],
    body: (limit) => fill(limit, 3, (n) => chat(cjkMessages(n, 1))),
  },
  {
    id: 'b',
    label: '10 messages of CJK',
    path: '/v1/chat/completions',
    key: 'generous',
    expect: [200],
    body: (limit) => fill(limit, 3, (n) => chat(cjkMessages(n, 10))),
  },
  {
    id: 'c',
    label: '1 message of spaces',
    path: '/v1/chat/completions',
    key: 'generous',
    expect: [200],
    body: (limit) => fill(limit, 1, (n) => chat([user(' '.repeat(n))])),
  },
  {
    id: 'd',
    label: '32K spaces, then CJK',
    path: '/v1/chat/completions',
    key: 'generous',
    expect: [200],
    body: (limit) => fill(limit, 3, (n) => chat([user(' '.repeat(SPACES_FIRST) + cjk(n))])),
  },
  {
    id: 'e',
    label: 'as b, key over its rpm',
    path: '/v1/chat/completions',
    key: 'rpm',
    expect: [429],
    body: (limit) => fill(limit, 3, (n) => chat(cjkMessages(n, 10))),
  },
  {
    id: 'f',
    label: 'as b, daily budget spent',
    path: '/v1/chat/completions',
    key: 'budget',
    expect: [429],
    body: (limit) => fill(limit, 3, (n) => chat(cjkMessages(n, 10))),
  },
  {
    id: 'g',
    label: 'many tiny messages',
    path: '/v1/chat/completions',
    key: 'generous',
    expect: CAPPED,
    // {"role":"user","content":"a"} and a comma: 30 bytes.
    body: (limit) => fill(limit, 30, (n) => chat(Array.from({ length: n }, () => user('a')))),
  },
  {
    id: 'g2',
    label: `${MAX_INPUTS} messages of CJK`,
    path: '/v1/chat/completions',
    key: 'generous',
    expect: [200],
    body: (limit) => fill(limit, 3, (n) => chat(cjkMessages(n, MAX_INPUTS))),
  },
  {
    id: 'h',
    label: 'completions, prompt array',
    path: '/v1/completions',
    key: 'generous',
    expect: CAPPED,
    body: (limit) => fill(limit, 15, (n) => ({ model: MODEL, prompt: shortStrings(n), max_tokens: 16 })),
  },
  {
    id: 'h2',
    label: `completions, ${MAX_INPUTS} long prompts`,
    path: '/v1/completions',
    key: 'generous',
    expect: [200],
    body: (limit) => fill(limit, 3, (n) => ({ model: MODEL, prompt: cjkParts(n, MAX_INPUTS), max_tokens: 16 })),
  },
  {
    id: 'i',
    label: 'embeddings, input array',
    path: '/v1/embeddings',
    key: 'generous',
    expect: CAPPED,
    body: (limit) => fill(limit, 15, (n) => ({ model: 'text-embedding-3-small', input: shortStrings(n) })),
  },
  {
    id: 'i2',
    label: `embeddings, ${MAX_INPUTS} long inputs`,
    path: '/v1/embeddings',
    key: 'generous',
    expect: [200],
    body: (limit) => fill(limit, 3, (n) => ({ model: 'text-embedding-3-small', input: cjkParts(n, MAX_INPUTS) })),
  },
];

/** Small requests that warm each code path (tokenizer, routes, refusals) before anything is measured. */
export const SMALL = {
  chat: JSON.stringify(chat([user('Say hello. 你好, 世界')])),
  completions: JSON.stringify({ model: MODEL, prompt: ['Say hello.', '你好'], max_tokens: 16 }),
  embeddings: JSON.stringify({ model: 'text-embedding-3-small', input: ['hello', '世界'] }),
};
