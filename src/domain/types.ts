// Records the store keeps. Plain data: no framework types, no prompt or completion text anywhere.

export type KeyStatus = 'active' | 'suspended' | 'revoked';

export interface User {
  /** Discord user id (snowflake). The relay's user identity. */
  discordId: string;
  createdAt: Date;
  /** Set when the user is barred from getting keys (relay ban). */
  bannedAt: Date | null;
  banReason: string | null;
}

export interface KeyRecord {
  /** Typed id, `key_...`. Safe to show and log. */
  id: string;
  /** SHA-256 hex of the full key. The key itself is never stored. */
  hash: string;
  /** Display prefix (`gg_AbCd12`), enough to recognise a key, useless to call with. */
  prefix: string;
  discordId: string;
  tier: string;
  status: KeyStatus;
  /** Why the key was suspended or revoked (operator text), or null. */
  statusReason: string | null;
  createdAt: Date;
  expiresAt: Date | null;
  revokedAt: Date | null;
}

/** Fields a status / tier change may touch. */
export type KeyPatch = Partial<Pick<KeyRecord, 'tier' | 'status' | 'statusReason' | 'expiresAt' | 'revokedAt'>>;

export type UsageStatus = 'ok' | 'client_error' | 'upstream_error' | 'aborted';

/** One relayed request: metadata only. */
export interface UsageRecord {
  /** Request id, `req_...`; unique, so a retried batch write cannot double count. */
  requestId: string;
  keyId: string;
  discordId: string;
  model: string;
  upstream: string | null;
  endpoint: 'chat.completions' | 'completions' | 'embeddings';
  promptTokens: number;
  completionTokens: number;
  /** Tokens charged to the budget (after model weight). */
  chargedTokens: number;
  /** True when token counts come from our tokenizer, not the upstream's `usage`. */
  estimated: boolean;
  status: UsageStatus;
  httpStatus: number;
  latencyMs: number;
  stream: boolean;
  createdAt: Date;
}

/** Aggregate per user, model and budget day (`YYYY-MM-DD` in the budget time zone). */
export interface DailyUsage {
  day: string;
  discordId: string;
  model: string;
  requests: number;
  promptTokens: number;
  completionTokens: number;
  chargedTokens: number;
}

export interface AuditEntry {
  id: string;
  at: Date;
  /** Who acted: `cli`, `discord:<id>`, `web:<id>`, `system`. */
  actor: string;
  action: string;
  /** What was acted on: a key id or a Discord user id. */
  target: string;
  reason: string | null;
  /** Small structured details (never secrets). */
  meta: Record<string, unknown> | null;
}
