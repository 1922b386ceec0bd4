// The load generator: a fixed number of requests at a fixed concurrency (closed loop: each worker
// sends its next request when the previous one has been read to the end), timing each one.
import { performance } from 'node:perf_hooks';
import type { Pool } from 'undici';

export interface BenchRequest {
  path: string;
  headers: Record<string, string>;
  body: string;
  stream: boolean;
}

export interface CellResult {
  /** Successful requests. */
  ok: number;
  elapsedMs: number;
  /** Milliseconds from sending to the last byte, per successful request. */
  total: number[];
  /** Milliseconds from sending to the first body byte (streams only). */
  firstByte: number[];
  /** Error description → how many times it happened. */
  errors: Map<string, number>;
}

const DONE_FRAME = 'data: [DONE]\n\n';

class BadResponse extends Error {}

/** Sends one request and reads it to the end; throws unless it is a 200 with a complete body. */
export async function sendOne(pool: Pool, req: BenchRequest): Promise<{ total: number; firstByte: number }> {
  const started = performance.now();
  const res = await pool.request({ method: 'POST', path: req.path, headers: req.headers, body: req.body });
  if (res.statusCode !== 200) {
    const text = await res.body.text().catch(() => '');
    throw new BadResponse(`HTTP ${res.statusCode}: ${text.slice(0, 200)}`);
  }
  if (!req.stream) {
    const text = await res.body.text();
    const total = performance.now() - started;
    if (!text.includes('"chat.completion"')) throw new BadResponse(`not a chat completion: ${text.slice(0, 200)}`);
    return { total, firstByte: total };
  }
  let firstByte = -1;
  // Only the end matters for the check, and a frame may be split across chunks.
  let tail = '';
  for await (const chunk of res.body) {
    if (firstByte < 0) firstByte = performance.now() - started;
    tail = (tail + (chunk as Buffer).toString('latin1')).slice(-64);
  }
  const total = performance.now() - started;
  if (!tail.endsWith(DONE_FRAME)) throw new BadResponse(`stream did not end with [DONE]: ...${tail}`);
  return { total, firstByte };
}

export function describe(err: unknown): string {
  if (err instanceof BadResponse) return err.message;
  const e = err as { code?: unknown; message?: unknown };
  return `${typeof e.code === 'string' ? `${e.code}: ` : ''}${String(e.message ?? err)}`;
}

export function emptyResult(): CellResult {
  return { ok: 0, elapsedMs: 0, total: [], firstByte: [], errors: new Map() };
}

/** Adds `part` (another batch of the same cell) to `into`. */
export function addBatch(into: CellResult, part: CellResult): void {
  into.ok += part.ok;
  into.elapsedMs += part.elapsedMs;
  for (const v of part.total) into.total.push(v);
  for (const v of part.firstByte) into.firstByte.push(v);
  for (const [what, n] of part.errors) into.errors.set(what, (into.errors.get(what) ?? 0) + n);
}

export async function runCell(pool: Pool, req: BenchRequest, concurrency: number, count: number): Promise<CellResult> {
  const result = emptyResult();
  let issued = 0;
  const worker = async () => {
    while (issued < count) {
      issued++;
      try {
        const t = await sendOne(pool, req);
        result.ok++;
        result.total.push(t.total);
        if (req.stream) result.firstByte.push(t.firstByte);
      } catch (err) {
        const what = describe(err);
        result.errors.set(what, (result.errors.get(what) ?? 0) + 1);
      }
    }
  };
  const started = performance.now();
  await Promise.all(Array.from({ length: concurrency }, worker));
  result.elapsedMs = performance.now() - started;
  return result;
}
