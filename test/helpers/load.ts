// Concurrent API clients for fault tests: N workers send chat completions (a mix of JSON and SSE)
// over many keys until stopped, and keep one `Shot` per request with what the client saw: status,
// x-request-id, the error body, SSE events received, whether the answer was complete, and whether
// the client itself walked away. undici with its own pool, no retries: one attempt, one shot.
import { Agent, request } from 'undici';

export interface LoadKey {
  key: string;
  discordId: string;
}

export interface Shot {
  worker: number;
  seq: number;
  discordId: string;
  stream: boolean;
  /** The user message sent (for recomputing the reservation). */
  prompt: string;
  /** ms since the load started */
  started: number;
  ended: number;
  /** null when no response head arrived */
  status: number | null;
  requestId: string | null;
  /** Parsed body of a non-2xx answer (or its raw text when not JSON). */
  errorBody: unknown;
  /** SSE data events received, [DONE] excluded. */
  chunks: number;
  /** The relay's in-band error event in an SSE stream (a stream that failed after its 200). */
  streamError: boolean;
  /** JSON read to its end, or SSE up to [DONE]. */
  complete: boolean;
  /** The client gave up on purpose (see `abortAfterChunks` / `abortBeforeHeadersMs`). */
  clientAborted: boolean;
  /** Transport failure the client did not cause (reset, refused, ...). */
  transportError: string | null;
}

export interface LoadOptions {
  /** Relay origin, e.g. http://127.0.0.1:1234 */
  url: string;
  keys: LoadKey[];
  workers: number;
  /** Stop after this many requests in total (default: until `stop()`). */
  requests?: number;
  /** Share of streaming requests, 0..1 (default 0.5). */
  streamShare?: number;
  /** `max_tokens` sent with every request (default 16). */
  maxTokens?: number;
  /** For a streaming request: walk away after this many events, or null to read to the end. */
  abortAfterChunks?: (rnd: () => number) => number | null;
  /** For any request: walk away after this many ms if no response head came yet, or null. */
  abortBeforeHeadersMs?: (rnd: () => number) => number | null;
  /** Pause of each worker between its requests (default 5 ms). */
  pauseMs?: number;
  /** A worker whose request ended like this sends no more (e.g. the relay's listener is gone). */
  workerStopsAfter?: (shot: Shot) => boolean;
  /** Seed of the random choices (keys, stream or not, abort points); logged so a failure can be replayed. */
  seed?: number;
}

export interface Load {
  seed: number;
  shots: Shot[];
  /** ms since the load started, on the clock of `Shot.started` / `Shot.ended`. */
  elapsed(): number;
  /** Workers finish the request they are in and stop. */
  stop(): void;
  /** Resolves with every shot once all workers stopped. */
  done: Promise<Shot[]>;
}

/** mulberry32: small, seedable, good enough to spread choices. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function startLoad(o: LoadOptions): Load {
  const seed = o.seed ?? Math.floor(Math.random() * 2 ** 31);
  const rnd = seededRandom(seed);
  // Generous transport timeouts: a relay that stops answering fails the test instead of hanging it.
  const agent = new Agent({ connections: o.workers * 2, headersTimeout: 60_000, bodyTimeout: 60_000 });
  const shots: Shot[] = [];
  const t0 = performance.now();
  let stopped = false;
  let issued = 0;

  const one = async (worker: number, seq: number): Promise<Shot> => {
    const k = o.keys[Math.floor(rnd() * o.keys.length)]!;
    const stream = rnd() < (o.streamShare ?? 0.5);
    const abortAfter = stream ? (o.abortAfterChunks?.(rnd) ?? null) : null;
    const abortHeadersMs = o.abortBeforeHeadersMs?.(rnd) ?? null;
    const prompt = `fault load worker ${worker} request ${seq}`;
    const shot: Shot = {
      worker,
      seq,
      discordId: k.discordId,
      stream,
      prompt,
      started: performance.now() - t0,
      ended: Number.NaN,
      status: null,
      requestId: null,
      errorBody: null,
      chunks: 0,
      streamError: false,
      complete: false,
      clientAborted: false,
      transportError: null,
    };
    const controller = new AbortController();
    let headersTimer: NodeJS.Timeout | undefined;
    if (abortHeadersMs !== null) headersTimer = setTimeout(() => controller.abort(), abortHeadersMs);
    try {
      const res = await request(`${o.url}/v1/chat/completions`, {
        method: 'POST',
        dispatcher: agent,
        signal: controller.signal,
        headers: { authorization: `Bearer ${k.key}`, 'content-type': 'application/json' },
        body: JSON.stringify({
          model: 'gpt-4o-mini',
          messages: [{ role: 'user', content: prompt }],
          max_tokens: o.maxTokens ?? 16,
          stream,
        }),
      });
      clearTimeout(headersTimer);
      shot.status = res.statusCode;
      const id = res.headers['x-request-id'];
      shot.requestId = typeof id === 'string' ? id : null;
      const isSse = String(res.headers['content-type'] ?? '').includes('text/event-stream');
      if (res.statusCode !== 200) {
        const text = await res.body.text();
        try {
          shot.errorBody = JSON.parse(text);
        } catch {
          shot.errorBody = text;
        }
        shot.complete = true;
      } else if (!isSse) {
        JSON.parse(await res.body.text());
        shot.complete = true;
      } else if (abortAfter === 0) {
        // Gone as soon as the head arrived, before any event.
        shot.clientAborted = true;
        controller.abort();
        await res.body.text().catch(() => {});
      } else {
        let pending = '';
        for await (const chunk of res.body) {
          pending += (chunk as Buffer).toString('utf8');
          let end = pending.indexOf('\n\n');
          while (end >= 0) {
            const event = pending.slice(0, end);
            pending = pending.slice(end + 2);
            end = pending.indexOf('\n\n');
            const data = event
              .split('\n')
              .filter((l) => l.startsWith('data:'))
              .map((l) => l.slice(5).trim())
              .join('\n');
            if (!data) continue;
            if (data === '[DONE]') {
              shot.complete = !shot.streamError;
              continue;
            }
            shot.chunks++;
            if (data.includes('"error"')) shot.streamError = true;
            if (abortAfter !== null && shot.chunks >= abortAfter && !shot.complete) {
              shot.clientAborted = true;
              controller.abort();
              break;
            }
          }
          if (shot.clientAborted) break;
        }
      }
    } catch (err) {
      clearTimeout(headersTimer);
      if (controller.signal.aborted) shot.clientAborted = true;
      else shot.transportError = (err as { code?: string }).code ?? (err as Error).message;
      shot.complete = false;
    }
    shot.ended = performance.now() - t0;
    return shot;
  };

  const worker = async (w: number) => {
    let seq = 0;
    while (!stopped && (o.requests === undefined || issued < o.requests)) {
      issued++;
      const shot = await one(w, seq++);
      shots.push(shot);
      if (o.workerStopsAfter?.(shot)) return;
      await sleep(o.pauseMs ?? 5);
    }
  };

  const done = Promise.all(Array.from({ length: o.workers }, (_, w) => worker(w))).then(async () => {
    await agent.close().catch(() => agent.destroy());
    return shots;
  });
  return {
    seed,
    shots,
    elapsed: () => performance.now() - t0,
    stop: () => {
      stopped = true;
    },
    done,
  };
}

/** Counts shots by status and error code, for failure messages and logs. */
export function tally(shots: Shot[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const s of shots) {
    const code = (s.errorBody as { error?: { code?: unknown } } | null)?.error?.code;
    const k =
      s.status === null
        ? s.clientAborted
          ? 'client-aborted-before-head'
          : `no-response ${s.transportError}`
        : `${s.status}${code ? ` ${String(code)}` : ''}${s.clientAborted ? ' client-aborted' : ''}${s.streamError ? ' stream-error' : ''}`;
    counts[k] = (counts[k] ?? 0) + 1;
  }
  return counts;
}

/** OpenAI's error shape: {"error":{"message","type","param","code"}} with string message and type. */
export function isOpenAIError(body: unknown): boolean {
  const e = (body as { error?: Record<string, unknown> } | null)?.error;
  return (
    !!e &&
    typeof e.message === 'string' &&
    e.message.length > 0 &&
    typeof e.type === 'string' &&
    (e.param === null || typeof e.param === 'string') &&
    (e.code === null || typeof e.code === 'string')
  );
}
