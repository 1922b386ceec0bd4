// Shared plumbing for CLI commands: build the services from config, print results, map refusals.
import type { Command } from 'commander';
import pino from 'pino';
import { loadConfig } from '../config/load.js';
import { buildServices } from '../container.js';
import { createLogger } from '../logger.js';
import type { Services } from '../services.js';

export const EXIT = { ok: 0, refused: 1, usage: 2, service: 3 } as const;

/** An expected refusal (unknown key, wrong status, ...): exit code 1 with its message. */
export class Refused extends Error {}

/** Some health checks failed (already printed): exit code 3 with a one-line summary. */
export class ChecksFailed extends Error {}

/** A bad argument or option value: exit code 2 with its message. */
export class UsageError extends Error {}

/** Runs `fn` with services built from the config, then closes them (flushing any writes). */
export async function withServices<T>(fn: (s: Services) => Promise<T>): Promise<T> {
  const config = loadConfig();
  // Logs go to stderr so stdout stays clean for scripts.
  const log = createLogger(process.env.LOG_LEVEL ?? 'warn', pino.destination(2));
  const services = await buildServices(config, { log });
  try {
    return await fn(services);
  } finally {
    await services.close();
  }
}

export function wantsJson(cmd: Command): boolean {
  return Boolean(cmd.optsWithGlobals().json);
}

/** Prints `data` as JSON with --json, otherwise the human text. */
export function output(cmd: Command, data: unknown, human: string): void {
  process.stdout.write(wantsJson(cmd) ? `${JSON.stringify(data, null, 2)}\n` : `${human}\n`);
}

export function fail(result: { ok: false; message: string }): never {
  throw new Refused(result.message);
}

export function table(rows: Array<Record<string, unknown>>): string {
  if (rows.length === 0) return '(none)';
  const cols = Object.keys(rows[0]!);
  const cell = (v: unknown) => (v instanceof Date ? v.toISOString() : v === null || v === undefined ? '-' : String(v));
  const widths = cols.map((c) => Math.max(c.length, ...rows.map((r) => cell(r[c]).length)));
  const line = (vals: string[]) =>
    vals
      .map((v, i) => v.padEnd(widths[i]!))
      .join('  ')
      .trimEnd();
  return [line(cols), ...rows.map((r) => line(cols.map((c) => cell(r[c]))))].join('\n');
}

export function parsePositiveInt(value: string, name: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new UsageError(`${name} must be a positive whole number, got "${value}"`);
  return n;
}
