// Request body validation at the edge. Only the fields the relay relies on are checked; every other
// field passes through to the upstream untouched.
import { z } from 'zod';
import { InvalidRequestError } from '../domain/errors.js';

const maxTokens = z.number().int().positive().nullish();
const streamOptions = z.looseObject({ include_usage: z.boolean().nullish() }).nullish();

export const chatBody = z.looseObject({
  model: z.string().min(1).max(256),
  messages: z.array(z.looseObject({ role: z.string().min(1) })).min(1),
  stream: z.boolean().nullish(),
  stream_options: streamOptions,
  max_tokens: maxTokens,
  max_completion_tokens: maxTokens,
  n: z.number().int().min(1).max(16).nullish(),
});

const tokenIds = z.array(z.number().int().min(0));
const textOrTokens = z.union([z.string(), z.array(z.string()), tokenIds, z.array(tokenIds)]);

export const completionBody = z.looseObject({
  model: z.string().min(1).max(256),
  prompt: textOrTokens,
  stream: z.boolean().nullish(),
  stream_options: streamOptions,
  max_tokens: maxTokens,
  n: z.number().int().min(1).max(16).nullish(),
  best_of: z.number().int().min(1).max(20).nullish(),
  suffix: z.string().nullish(),
});

export const embeddingBody = z.looseObject({
  model: z.string().min(1).max(256),
  input: textOrTokens.refine((v) => (Array.isArray(v) ? v.length > 0 : true), 'must not be empty'),
});

function paramPath(path: PropertyKey[]): string {
  return path.map((p, i) => (typeof p === 'number' ? `[${p}]` : `${i ? '.' : ''}${String(p)}`)).join('');
}

/**
 * OpenAI's limits on list fields: 2048 messages, and 2048 inputs per embeddings request (legacy
 * prompt lists get the same). Checked before the schema, which would otherwise walk every item of
 * a list far too long to accept. A single prompt given as token ids is one input, not a list.
 */
export const MAX_LIST_ITEMS = 2048;

function checkListLength(body: Record<string, unknown>, field: string): void {
  const v = body[field];
  if (!Array.isArray(v) || v.length <= MAX_LIST_ITEMS || typeof v[0] === 'number') return;
  throw new InvalidRequestError(
    `Invalid '${field}': array too long. Expected an array with maximum length ${MAX_LIST_ITEMS}, but got an array with length ${v.length} instead.`,
    field,
    'array_above_max_length',
  );
}

/** Validates `body` against `schema`; `listField` names the field whose length is capped. */
export function parseBody<T extends z.ZodType>(schema: T, body: unknown, listField: string): z.infer<T> {
  if (body === undefined || body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw new InvalidRequestError(
      'The request body must be a JSON object sent with Content-Type: application/json.',
      null,
      'invalid_body',
    );
  }
  checkListLength(body as Record<string, unknown>, listField);
  const r = schema.safeParse(body);
  if (r.success) return r.data;
  const issue = r.error.issues[0]!;
  const param = paramPath(issue.path);
  const message =
    issue.code === 'invalid_type' && issue.input === undefined
      ? `Missing required parameter: '${param}'.`
      : `Invalid value for '${param}': ${issue.message}.`;
  throw new InvalidRequestError(message, param || null);
}
