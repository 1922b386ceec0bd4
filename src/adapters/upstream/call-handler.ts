// One upstream call as an undici dispatch handler: the response head settles a promise, and the body
// is handed over either whole (`read`) or as an async iterable with backpressure. Replaces
// `Pool.request`, whose per-call AbortSignal listener and Readable body (with its async iterator)
// cost the relay more CPU than the rest of the call.
import type { Dispatcher } from 'undici';
import type { Cancellation } from '../../domain/cancellation.js';
import { UpstreamUnavailableError } from '../../domain/errors.js';
import type { UpstreamResponse } from '../../domain/ports.js';

type Controller = Dispatcher.DispatchController;

/** Bytes queued for a slow reader before the upstream socket is paused. */
const HIGH_WATER = 64 * 1024;

interface Waiter {
  resolve(r: IteratorResult<Uint8Array>): void;
  reject(err: unknown): void;
}

interface Collector {
  limit: number;
  parts: Buffer[];
  size: number;
  resolve(b: Buffer): void;
  reject(err: unknown): void;
}

function abortError(): Error {
  return new DOMException('The upstream call was aborted.', 'AbortError');
}

const DONE: IteratorResult<Uint8Array> = { done: true, value: undefined };

const tooLarge = () => new UpstreamUnavailableError('The upstream response was too large.');

function joined(parts: Buffer[], size: number): Buffer {
  return parts.length === 1 ? parts[0]! : Buffer.concat(parts, size);
}

function joinRepeated(headers: Record<string, string | string[] | undefined>): Record<string, string> {
  const flat: Record<string, string> = {};
  for (const name in headers) {
    const value = headers[name];
    if (value !== undefined) flat[name] = typeof value === 'string' ? value : value.join(', ');
  }
  return flat;
}

export class CallHandler implements Dispatcher.DispatchHandler {
  /** Settles with the response head, or rejects with undici's error (mapped by the caller). */
  readonly head: Promise<UpstreamResponse>;
  #resolveHead!: (r: UpstreamResponse) => void;
  #rejectHead!: (err: unknown) => void;
  #headSettled = false;

  #controller: Controller | null = null;
  readonly #cancellation: Cancellation;
  readonly #onAbort = () => this.#abort(abortError());

  #queue: Buffer[] = [];
  #queued = 0;
  #ended = false;
  #error: unknown = null;
  #waiter: Waiter | null = null;
  #collector: Collector | null = null;
  #consumed = false;

  constructor(cancellation: Cancellation) {
    this.#cancellation = cancellation;
    this.head = new Promise((resolve, reject) => {
      this.#resolveHead = resolve;
      this.#rejectHead = reject;
    });
    cancellation.onAbort(this.#onAbort);
  }

  onRequestStart(controller: Controller): void {
    this.#controller = controller;
    if (this.#cancellation.aborted) controller.abort(abortError());
  }

  onResponseStart(
    _controller: Controller,
    statusCode: number,
    headers: Record<string, string | string[] | undefined>,
  ): void {
    if (statusCode < 200) return; // informational: the real head follows
    // undici's object as it is, unless a header came more than once (then its values are joined).
    let flat = headers as Record<string, string>;
    for (const name in headers) {
      if (typeof headers[name] !== 'string') {
        flat = joinRepeated(headers);
        break;
      }
    }
    this.#headSettled = true;
    this.#resolveHead({
      status: statusCode,
      headers: flat,
      body: { [Symbol.asyncIterator]: () => this.#iterate() },
      read: (limit) => this.#read(limit),
      cancel: () => this.#abort(abortError()),
    });
  }

  onResponseData(controller: Controller, chunk: Buffer): void {
    const c = this.#collector;
    if (c) {
      c.size += chunk.length;
      if (c.size > c.limit) {
        this.#collector = null;
        c.reject(tooLarge());
        controller.abort(abortError());
        return;
      }
      c.parts.push(chunk);
      return;
    }
    const w = this.#waiter;
    if (w) {
      this.#waiter = null;
      w.resolve({ done: false, value: chunk });
      return;
    }
    this.#queue.push(chunk);
    this.#queued += chunk.length;
    if (this.#queued > HIGH_WATER) controller.pause();
  }

  onResponseEnd(): void {
    this.#ended = true;
    this.#cancellation.forget(this.#onAbort);
    const c = this.#collector;
    if (c) {
      this.#collector = null;
      c.resolve(joined(c.parts, c.size));
      return;
    }
    const w = this.#waiter;
    if (w) {
      this.#waiter = null;
      w.resolve(DONE);
    }
  }

  onResponseError(_controller: Controller | undefined, err: Error): void {
    this.#cancellation.forget(this.#onAbort);
    const reason = this.#cancellation.aborted ? abortError() : err;
    if (!this.#headSettled) {
      this.#headSettled = true;
      this.#rejectHead(reason);
      return;
    }
    if (this.#ended) return;
    this.#error = reason;
    const c = this.#collector;
    if (c) {
      this.#collector = null;
      c.reject(reason);
    }
    const w = this.#waiter;
    if (w) {
      this.#waiter = null;
      w.reject(reason);
    }
  }

  #abort(reason: Error): void {
    if (this.#ended || this.#error) return;
    if (this.#controller) this.#controller.abort(reason);
    // Before the request reached a connection, `onRequestStart` aborts it.
  }

  /** The error to give a second reader, or null for the first. */
  #claim(): Error | null {
    if (this.#consumed) return new Error('An upstream body can be read only once.');
    this.#consumed = true;
    return null;
  }

  #read(limit: number): Promise<Buffer> {
    const twice = this.#claim();
    if (twice) return Promise.reject(twice);
    if (this.#error) return Promise.reject(this.#error);
    const parts = this.#queue;
    const size = this.#queued;
    this.#queue = [];
    this.#queued = 0;
    if (size > limit) {
      this.#abort(abortError());
      return Promise.reject(tooLarge());
    }
    if (this.#ended) return Promise.resolve(joined(parts, size));
    return new Promise((resolve, reject) => {
      this.#collector = { limit, parts, size, resolve, reject };
      this.#controller?.resume();
    });
  }

  #iterate(): AsyncIterator<Uint8Array> {
    const twice = this.#claim();
    if (twice) throw twice;
    return {
      next: () => {
        const chunk = this.#queue.shift();
        if (chunk) {
          this.#queued -= chunk.length;
          if (this.#queued <= HIGH_WATER && this.#controller?.paused) this.#controller.resume();
          return Promise.resolve({ done: false, value: chunk });
        }
        if (this.#error) return Promise.reject(this.#error);
        if (this.#ended) return Promise.resolve(DONE);
        return new Promise((resolve, reject) => {
          this.#waiter = { resolve, reject };
        });
      },
      // A reader that stops early (break, throw) releases the connection.
      return: () => {
        this.#abort(abortError());
        return Promise.resolve(DONE);
      },
    };
  }
}
