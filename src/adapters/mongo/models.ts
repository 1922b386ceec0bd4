// Mongoose schemas for the MongoDB Store. Models are compiled on a given connection (never the global
// mongoose instance), so each MongoStore - and each test - owns its own set.
import { type Connection, type Model, Schema, type Types } from 'mongoose';
import type { KeyStatus, UsageRecord, UsageStatus } from '../../domain/types.js';

/** The partial unique index that makes "one live key per Discord user" a database guarantee. */
export const LIVE_KEY_INDEX = 'one_live_key_per_user';
/** The TTL index that expires request records after the retention period. */
export const USAGE_TTL_INDEX = 'usage_ttl';

export const COLLECTIONS = {
  users: 'users',
  keys: 'keys',
  usage: 'usage',
  usageDaily: 'usage_daily',
  audit: 'audit',
} as const;

export interface UserDoc {
  /** Discord id. */
  _id: string;
  createdAt: Date;
  bannedAt: Date | null;
  banReason: string | null;
}

export interface KeyDoc {
  /** Key id. */
  _id: string;
  hash: string;
  prefix: string;
  discordId: string;
  tier: string;
  status: KeyStatus;
  statusReason: string | null;
  createdAt: Date;
  expiresAt: Date | null;
  revokedAt: Date | null;
  /** True for active and suspended keys; only these are in the partial unique index. */
  live: boolean;
}

export interface UsageDoc {
  /** Request id, so a retried batch hits the _id index instead of double counting. */
  _id: string;
  keyId: string;
  discordId: string;
  model: string;
  upstream: string | null;
  endpoint: UsageRecord['endpoint'];
  promptTokens: number;
  completionTokens: number;
  chargedTokens: number;
  estimated: boolean;
  status: UsageStatus;
  httpStatus: number;
  latencyMs: number;
  stream: boolean;
  createdAt: Date;
}

export interface UsageDailyDoc {
  day: string;
  discordId: string;
  model: string;
  requests: number;
  promptTokens: number;
  completionTokens: number;
  chargedTokens: number;
}

export interface AuditDoc {
  /** Audit entry id. */
  _id: string;
  at: Date;
  actor: string;
  action: string;
  target: string;
  reason: string | null;
  meta: Record<string, unknown> | null;
  /** Insertion order for entries with the same `at` (ObjectIds grow within a process). */
  seq: Types.ObjectId;
}

export interface StoreModels {
  Users: Model<UserDoc>;
  Keys: Model<KeyDoc>;
  Usage: Model<UsageDoc>;
  UsageDaily: Model<UsageDailyDoc>;
  Audit: Model<AuditDoc>;
}

// No version key (documents are never saved through optimistic concurrency), no `id` virtual, and
// `minimize: false` so an empty `meta` object round-trips instead of vanishing.
const options = { versionKey: false, id: false, minimize: false } as const;

const nullableString = { type: String, default: null };
const nullableDate = { type: Date, default: null };

function userSchema(): Schema<UserDoc> {
  return new Schema<UserDoc>(
    {
      _id: { type: String, required: true },
      createdAt: { type: Date, required: true },
      bannedAt: nullableDate,
      banReason: nullableString,
    },
    options,
  );
}

function keySchema(): Schema<KeyDoc> {
  const schema = new Schema<KeyDoc>(
    {
      _id: { type: String, required: true },
      hash: { type: String, required: true },
      prefix: { type: String, required: true },
      discordId: { type: String, required: true },
      tier: { type: String, required: true },
      status: { type: String, enum: ['active', 'suspended', 'revoked'], required: true },
      statusReason: nullableString,
      createdAt: { type: Date, required: true },
      expiresAt: nullableDate,
      revokedAt: nullableDate,
      live: { type: Boolean, required: true },
    },
    options,
  );
  schema.index({ hash: 1 }, { unique: true, name: 'hash_unique' });
  schema.index({ discordId: 1 }, { unique: true, partialFilterExpression: { live: true }, name: LIVE_KEY_INDEX });
  schema.index({ discordId: 1, createdAt: -1 }, { name: 'owner_newest' });
  // listKeys without an owner (operator views filtered by status, or everything).
  schema.index({ status: 1, createdAt: -1 }, { name: 'status_newest' });
  schema.index({ createdAt: -1 }, { name: 'newest' });
  return schema;
}

function usageSchema(retentionDays: number): Schema<UsageDoc> {
  const schema = new Schema<UsageDoc>(
    {
      _id: { type: String, required: true },
      keyId: { type: String, required: true },
      discordId: { type: String, required: true },
      model: { type: String, required: true },
      upstream: nullableString,
      endpoint: { type: String, enum: ['chat.completions', 'completions', 'embeddings'], required: true },
      promptTokens: { type: Number, required: true },
      completionTokens: { type: Number, required: true },
      chargedTokens: { type: Number, required: true },
      estimated: { type: Boolean, required: true },
      status: { type: String, enum: ['ok', 'client_error', 'upstream_error', 'aborted'], required: true },
      httpStatus: { type: Number, required: true },
      latencyMs: { type: Number, required: true },
      stream: { type: Boolean, required: true },
      createdAt: { type: Date, required: true },
    },
    options,
  );
  // Also serves purgeUsage's range delete.
  schema.index({ createdAt: 1 }, { expireAfterSeconds: retentionDays * 86_400, name: USAGE_TTL_INDEX });
  schema.index({ discordId: 1, createdAt: -1 }, { name: 'owner_newest' });
  return schema;
}

function usageDailySchema(): Schema<UsageDailyDoc> {
  // No defaults on the counters: upserts create them from `$inc` alone.
  const schema = new Schema<UsageDailyDoc>(
    {
      day: { type: String, required: true },
      discordId: { type: String, required: true },
      model: { type: String, required: true },
      requests: Number,
      promptTokens: Number,
      completionTokens: Number,
      chargedTokens: Number,
    },
    options,
  );
  schema.index({ day: 1, discordId: 1, model: 1 }, { unique: true, name: 'day_owner_model' });
  schema.index({ discordId: 1, day: 1 }, { name: 'owner_day' });
  return schema;
}

function auditSchema(): Schema<AuditDoc> {
  const schema = new Schema<AuditDoc>(
    {
      _id: { type: String, required: true },
      at: { type: Date, required: true },
      actor: { type: String, required: true },
      action: { type: String, required: true },
      target: { type: String, required: true },
      reason: nullableString,
      meta: { type: Schema.Types.Mixed, default: null },
      seq: { type: Schema.Types.ObjectId, required: true },
    },
    options,
  );
  schema.index({ target: 1, at: -1, seq: -1 }, { name: 'target_newest' });
  schema.index({ at: -1, seq: -1 }, { name: 'newest' });
  return schema;
}

/** Compiles the Store's models on `conn`. Call once per connection. */
export function createModels(conn: Connection, opts: { retentionDays: number }): StoreModels {
  return {
    Users: conn.model<UserDoc>('User', userSchema(), COLLECTIONS.users),
    Keys: conn.model<KeyDoc>('Key', keySchema(), COLLECTIONS.keys),
    Usage: conn.model<UsageDoc>('Usage', usageSchema(opts.retentionDays), COLLECTIONS.usage),
    UsageDaily: conn.model<UsageDailyDoc>('UsageDaily', usageDailySchema(), COLLECTIONS.usageDaily),
    Audit: conn.model<AuditDoc>('Audit', auditSchema(), COLLECTIONS.audit),
  };
}
