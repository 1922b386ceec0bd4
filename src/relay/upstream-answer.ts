// Reading what an upstream sent: its body with a size cap, JSON objects, the provider's `usage`, and
// the text the model produced (counted when the provider reports no usage).
import { AppError, UpstreamTimeoutError, UpstreamUnavailableError } from '../domain/errors.js';

/** Largest upstream body (JSON answer or error) read into memory. */
export const MAX_BUFFERED_BODY = 16 * 1024 * 1024;

export interface Usage {
  prompt: number;
  completion: number;
}

/** An error while reading an upstream body, as the client should see it (aborts pass through). */
export function bodyError(err: unknown): unknown {
  if (err instanceof AppError || (err as Error)?.name === 'AbortError') return err;
  if ((err as { code?: string })?.code === 'UND_ERR_BODY_TIMEOUT') {
    return new UpstreamTimeoutError('The upstream provider stopped sending its answer.', err);
  }
  return new UpstreamUnavailableError('The upstream connection failed while reading its answer.', err);
}

export function parseObject(text: string): Record<string, unknown> | null {
  try {
    const v = JSON.parse(text);
    return v && typeof v === 'object' && !Array.isArray(v) ? v : null;
  } catch {
    return null;
  }
}

interface UsageShape {
  prompt_tokens?: number;
  completion_tokens?: number;
}

const isCount = (n: unknown): n is number => Number.isSafeInteger(n) && (n as number) >= 0;

/** The provider's `usage`, when it is well formed; anything else is treated as missing (and estimated). */
export function readUsage(obj: Record<string, unknown> | null): Usage | null {
  const u = obj?.usage as UsageShape | null | undefined;
  if (!u || !isCount(u.prompt_tokens)) return null;
  if (u.completion_tokens !== undefined && !isCount(u.completion_tokens)) return null;
  return { prompt: u.prompt_tokens, completion: u.completion_tokens ?? 0 };
}

/** Text the model produced in a JSON answer or a stream chunk (chat and legacy completions). */
export function producedText(obj: Record<string, unknown> | null): string {
  const choices = obj?.choices;
  if (!Array.isArray(choices)) return '';
  let text = '';
  for (const c of choices as Array<Record<string, unknown>>) {
    const msg = (c.delta ?? c.message) as Record<string, unknown> | undefined;
    if (typeof msg?.content === 'string') text += msg.content;
    if (msg?.tool_calls !== undefined) text += JSON.stringify(msg.tool_calls);
    if (typeof c.text === 'string') text += c.text;
  }
  return text;
}
