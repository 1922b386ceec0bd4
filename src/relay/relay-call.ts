// One relayed request as the endpoint hands it to the proxy, and what relaying it came to.
import type { ModelConfig } from '../config/schema.js';
import type { TokenMeter } from '../domain/token-estimate.js';
import type { UsageRecord, UsageStatus } from '../domain/types.js';

export interface RelayCall {
  endpoint: UsageRecord['endpoint'];
  path: string;
  modelName: string;
  model: ModelConfig;
  body: Record<string, unknown>;
  /** Upper bound on the prompt tokens. */
  promptTokens: number;
  /** The meter that estimated the prompt; it counts produced text when the upstream reports no usage. */
  meter: TokenMeter;
  stream: boolean;
  /** Field to add when the client sent no completion cap; null for embeddings (no completion). */
  maxTokensField: 'max_tokens' | 'max_completion_tokens' | null;
  requestedMaxTokens: number | null;
  /** Completions the upstream generates (choices × prompts); 0 for embeddings. */
  completions: number;
}

export interface Outcome {
  status: UsageStatus;
  httpStatus: number;
  promptTokens: number;
  completionTokens: number;
  estimated: boolean;
  upstream: string | null;
}

/** What the JSON or stream relay learned; the upstream's name is added by the caller. */
export type Relayed = Omit<Outcome, 'upstream'>;
