// The production Store: MongoDB through mongoose. A standalone MongoDB has no transactions, so every
// guarantee the port promises rests on single-document atomicity and unique indexes:
// - one live key per user: a unique index on discordId, partial on `live: true`;
// - conditional key updates: one findOneAndUpdate whose filter carries the status condition;
// - idempotent usage: the request id is the _id, and only records the insert really stored are
//   added to the daily aggregates, with `$inc` upserts (never read-modify-write).
import { type Connection, createConnection, Types } from 'mongoose';
import { LiveKeyExistsError } from '../../domain/errors.js';
import type { Store } from '../../domain/ports.js';
import type { AuditEntry, DailyUsage, KeyPatch, KeyRecord, KeyStatus, UsageRecord, User } from '../../domain/types.js';
import {
  type AuditDoc,
  COLLECTIONS,
  createModels,
  type KeyDoc,
  LIVE_KEY_INDEX,
  type StoreModels,
  USAGE_TTL_INDEX,
  type UsageDailyDoc,
  type UsageDoc,
  type UserDoc,
} from './models.js';

const DEFAULT_KEY_LIMIT = 100;
const DEFAULT_SERVER_SELECTION_TIMEOUT_MS = 5_000;
const CONNECT_ATTEMPTS = 3;
const CONNECT_BACKOFF_MS = 200;
const DUPLICATE_KEY = 11000;
/** Request records removed per purge round trip: bounded work per command, as on SQLite. */
const PURGE_BATCH_DOCS = 1_000;
const NAMESPACE_NOT_FOUND = 26;

export interface MongoStoreOptions {
  /** Request records older than this are removed by MongoDB's TTL monitor. */
  retentionDays: number;
  /** How long an operation waits for a reachable server before failing (default 5 s). */
  serverSelectionTimeoutMS?: number;
}

/**
 * The URI as it may be shown: no user, no password, no query string (options such as
 * `authMechanismProperties` can carry secrets too). Credentials end at the LAST `@`, so a password
 * holding unescaped `@`, `/` or `?` is still removed whole.
 */
export function redactMongoUri(uri: string): string {
  const scheme = /^[a-z][a-z0-9+.-]*:\/\//i.exec(uri)?.[0];
  if (scheme === undefined) return '(unparseable MongoDB URI)';
  const rest = uri.slice(scheme.length);
  const hostsAndPath = rest.slice(rest.lastIndexOf('@') + 1).split('?')[0] ?? '';
  // Host lists and database names never hold `=` or `&`: if they show up, the `@` was inside the
  // query string and what is left is not safe to print.
  return /[=&]/.test(hostsAndPath) ? `${scheme}***` : `${scheme}${hostsAndPath}`;
}

/** Removes the URI and its credentials from a driver message before it is shown. */
function scrub(message: string, uri: string): string {
  const rest = uri.replace(/^[a-z][a-z0-9+.-]*:\/\//i, '');
  const at = rest.lastIndexOf('@');
  const credentials = at === -1 ? '' : rest.slice(0, at);
  const password = credentials.includes(':') ? credentials.slice(credentials.indexOf(':') + 1) : '';
  let decoded = password;
  try {
    decoded = decodeURIComponent(password);
  } catch {
    // A malformed escape: the raw form is all there is to remove.
  }
  let out = message;
  for (const secret of [uri, credentials, password, decoded]) {
    if (secret !== '') out = out.replaceAll(secret, '***');
  }
  return out;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

interface MongoErrorLike {
  code?: unknown;
  message?: unknown;
  keyPattern?: Record<string, unknown>;
  writeErrors?: Array<{ code?: unknown; index?: unknown }>;
  insertedIds?: Record<string, unknown>;
}

const asMongoError = (err: unknown): MongoErrorLike => (typeof err === 'object' && err !== null ? err : {});

/** A duplicate-key error raised by the partial unique index on live keys. */
function isLiveKeyViolation(err: unknown): boolean {
  const e = asMongoError(err);
  if (e.code !== DUPLICATE_KEY) return false;
  if (typeof e.message === 'string' && e.message.includes(LIVE_KEY_INDEX)) return true;
  const pattern = e.keyPattern;
  return pattern !== undefined && Object.keys(pattern).length === 1 && 'discordId' in pattern;
}

function toUser(d: UserDoc): User {
  return { discordId: d._id, createdAt: d.createdAt, bannedAt: d.bannedAt ?? null, banReason: d.banReason ?? null };
}

function toKeyDoc(k: KeyRecord): KeyDoc {
  return {
    _id: k.id,
    hash: k.hash,
    prefix: k.prefix,
    discordId: k.discordId,
    tier: k.tier,
    status: k.status,
    statusReason: k.statusReason,
    createdAt: k.createdAt,
    expiresAt: k.expiresAt,
    revokedAt: k.revokedAt,
    live: k.status !== 'revoked',
  };
}

function toKey(d: KeyDoc): KeyRecord {
  return {
    id: d._id,
    hash: d.hash,
    prefix: d.prefix,
    discordId: d.discordId,
    tier: d.tier,
    status: d.status,
    statusReason: d.statusReason ?? null,
    createdAt: d.createdAt,
    expiresAt: d.expiresAt ?? null,
    revokedAt: d.revokedAt ?? null,
  };
}

function toUsageDoc(r: UsageRecord): UsageDoc {
  return {
    _id: r.requestId,
    keyId: r.keyId,
    discordId: r.discordId,
    model: r.model,
    upstream: r.upstream,
    endpoint: r.endpoint,
    promptTokens: r.promptTokens,
    completionTokens: r.completionTokens,
    chargedTokens: r.chargedTokens,
    estimated: r.estimated,
    status: r.status,
    httpStatus: r.httpStatus,
    latencyMs: r.latencyMs,
    stream: r.stream,
    createdAt: r.createdAt,
  };
}

function toUsage(d: UsageDoc): UsageRecord {
  return {
    requestId: d._id,
    keyId: d.keyId,
    discordId: d.discordId,
    model: d.model,
    upstream: d.upstream ?? null,
    endpoint: d.endpoint,
    promptTokens: d.promptTokens,
    completionTokens: d.completionTokens,
    chargedTokens: d.chargedTokens,
    estimated: d.estimated,
    status: d.status,
    httpStatus: d.httpStatus,
    latencyMs: d.latencyMs,
    stream: d.stream,
    createdAt: d.createdAt,
  };
}

function toDaily(d: UsageDailyDoc): DailyUsage {
  return {
    day: d.day,
    discordId: d.discordId,
    model: d.model,
    requests: d.requests,
    promptTokens: d.promptTokens,
    completionTokens: d.completionTokens,
    chargedTokens: d.chargedTokens,
  };
}

function toAudit(d: AuditDoc): AuditEntry {
  return {
    id: d._id,
    at: d.at,
    actor: d.actor,
    action: d.action,
    target: d.target,
    reason: d.reason ?? null,
    meta: d.meta ?? null,
  };
}

/**
 * Which of `docs` an unordered insertMany stored. Duplicate request ids (11000) are records stored
 * by an earlier batch; any other failure is returned so it can be raised once the stored part is
 * accounted for.
 */
export function insertOutcome(err: unknown, count: number): { stored: number[]; failure: unknown } {
  const e = asMongoError(err);
  // insertedIds is exact only when the server answered with per-document write errors. After a
  // network or write-concern failure the outcome is unknown: count nothing rather than risk
  // counting records that a retry would then insert and count again.
  if (!e.writeErrors?.length || e.insertedIds === undefined) return { stored: [], failure: err };
  const stored = Object.keys(e.insertedIds)
    .map(Number)
    .filter((i) => Number.isInteger(i) && i >= 0 && i < count);
  const onlyDuplicates = e.writeErrors.every((w) => w.code === DUPLICATE_KEY);
  return { stored, failure: onlyDuplicates ? null : err };
}

export class MongoStore implements Store {
  private constructor(
    private readonly conn: Connection,
    private readonly m: StoreModels,
  ) {}

  /**
   * Opens a dedicated connection (retrying a few times with backoff), then makes sure every index
   * exists. The error for an unreachable server names the URI without credentials.
   */
  static async connect(uri: string, opts: MongoStoreOptions): Promise<MongoStore> {
    const conn = await openConnection(uri, opts.serverSelectionTimeoutMS ?? DEFAULT_SERVER_SELECTION_TIMEOUT_MS);
    try {
      const models = createModels(conn, { retentionDays: opts.retentionDays });
      await alignUsageTtl(conn, opts.retentionDays * 86_400);
      await Promise.all(Object.values(models).map((model) => model.createIndexes()));
      return new MongoStore(conn, models);
    } catch (err) {
      await conn.destroy();
      throw err;
    }
  }

  async ensureUser(discordId: string, now: Date): Promise<User> {
    // Upsert on _id: concurrent calls converge on one document (the server retries the losing
    // upsert as an update), and $setOnInsert keeps the first createdAt.
    const doc = await this.m.Users.findOneAndUpdate(
      { _id: discordId },
      { $setOnInsert: { createdAt: now, bannedAt: null, banReason: null } },
      { upsert: true, returnDocument: 'after' },
    ).lean<UserDoc>();
    return toUser(doc!);
  }

  async getUser(discordId: string): Promise<User | null> {
    const doc = await this.m.Users.findById(discordId).lean<UserDoc>();
    return doc ? toUser(doc) : null;
  }

  async setUserBan(discordId: string, ban: { at: Date; reason: string } | null): Promise<User | null> {
    const doc = await this.m.Users.findOneAndUpdate(
      { _id: discordId },
      { $set: { bannedAt: ban?.at ?? null, banReason: ban?.reason ?? null } },
      { returnDocument: 'after' },
    ).lean<UserDoc>();
    return doc ? toUser(doc) : null;
  }

  async deleteUser(discordId: string): Promise<{ keys: number; usageRecords: number }> {
    // Keys go first: if the process dies part-way, no live key outlives the deletion, and the user
    // document (removed last) still marks the job as unfinished for a retry.
    const keys = await this.m.Keys.deleteMany({ discordId });
    const usage = await this.m.Usage.deleteMany({ discordId });
    await this.m.UsageDaily.deleteMany({ discordId });
    await this.m.Users.deleteOne({ _id: discordId });
    return { keys: keys.deletedCount, usageRecords: usage.deletedCount };
  }

  async insertKey(key: KeyRecord): Promise<void> {
    try {
      await this.m.Keys.create(toKeyDoc(key));
    } catch (err) {
      if (isLiveKeyViolation(err)) throw new LiveKeyExistsError(key.discordId);
      // The driver's message would quote the clashing hash; say what happened without it.
      if (asMongoError(err).code === DUPLICATE_KEY) throw new Error('A key with the same id or hash is already stored');
      throw err;
    }
  }

  async getKeyById(id: string): Promise<KeyRecord | null> {
    const doc = await this.m.Keys.findById(id).lean<KeyDoc>();
    return doc ? toKey(doc) : null;
  }

  async getKeyByHash(hash: string): Promise<KeyRecord | null> {
    const doc = await this.m.Keys.findOne({ hash }).lean<KeyDoc>();
    return doc ? toKey(doc) : null;
  }

  async listKeys(filter: { discordId?: string; status?: KeyStatus; limit?: number }): Promise<KeyRecord[]> {
    const limit = filter.limit ?? DEFAULT_KEY_LIMIT;
    // MongoDB reads limit(0) as "no limit".
    if (limit <= 0) return [];
    const query: { discordId?: string; status?: KeyStatus } = {};
    if (filter.discordId !== undefined) query.discordId = filter.discordId;
    if (filter.status !== undefined) query.status = filter.status;
    const docs = await this.m.Keys.find(query).sort({ createdAt: -1, _id: -1 }).limit(limit).lean<KeyDoc[]>();
    return docs.map(toKey);
  }

  async updateKey(id: string, patch: KeyPatch, ifStatus?: KeyStatus[]): Promise<KeyRecord | null> {
    const filter = ifStatus === undefined ? { _id: id } : { _id: id, status: { $in: ifStatus } };
    const set: Partial<KeyDoc> = {};
    if (patch.tier !== undefined) set.tier = patch.tier;
    if (patch.status !== undefined) {
      set.status = patch.status;
      set.live = patch.status !== 'revoked';
    }
    if (patch.statusReason !== undefined) set.statusReason = patch.statusReason;
    if (patch.expiresAt !== undefined) set.expiresAt = patch.expiresAt;
    if (patch.revokedAt !== undefined) set.revokedAt = patch.revokedAt;
    // An empty $set is rejected by the server; with nothing to change, the condition alone decides.
    if (Object.keys(set).length === 0) {
      const doc = await this.m.Keys.findOne(filter).lean<KeyDoc>();
      return doc ? toKey(doc) : null;
    }
    try {
      const doc = await this.m.Keys.findOneAndUpdate(filter, { $set: set }, { returnDocument: 'after' }).lean<KeyDoc>();
      return doc ? toKey(doc) : null;
    } catch (err) {
      if (!isLiveKeyViolation(err)) throw err;
      // Only making a revoked key live again trips the index; the key exists, so name its owner.
      const current = await this.m.Keys.findById(id).lean<KeyDoc>();
      throw new LiveKeyExistsError(current?.discordId ?? '');
    }
  }

  async insertUsage(records: UsageRecord[], dayOf: (r: UsageRecord) => string): Promise<void> {
    if (records.length === 0) return;
    const docs = records.map(toUsageDoc);
    let stored: number[];
    let failure: unknown = null;
    try {
      // lean: the documents are already exact; mongoose's per-document validation would silently
      // drop an invalid one from an unordered insert instead of failing.
      await this.m.Usage.insertMany(docs, { ordered: false, lean: true });
      stored = docs.map((_, i) => i);
    } catch (err) {
      ({ stored, failure } = insertOutcome(err, docs.length));
    }
    // Count what was stored even when the insert partly failed: a retry will skip those records as
    // duplicates, so this is the only chance to count them.
    await this.addToDaily(
      stored.map((i) => records[i]!),
      dayOf,
    );
    if (failure !== null) throw failure;
  }

  private async addToDaily(records: UsageRecord[], dayOf: (r: UsageRecord) => string): Promise<void> {
    if (records.length === 0) return;
    // Sum the batch per aggregate in memory so each aggregate gets one $inc.
    const sums = new Map<string, UsageDailyDoc>();
    for (const r of records) {
      const day = dayOf(r);
      const id = JSON.stringify([day, r.discordId, r.model]);
      const s = sums.get(id) ?? {
        day,
        discordId: r.discordId,
        model: r.model,
        requests: 0,
        promptTokens: 0,
        completionTokens: 0,
        chargedTokens: 0,
      };
      s.requests += 1;
      s.promptTokens += r.promptTokens;
      s.completionTokens += r.completionTokens;
      s.chargedTokens += r.chargedTokens;
      sums.set(id, s);
    }
    // Equality on exactly the unique index's fields: the server retries an upsert that loses an
    // insert race as an update, so concurrent batches never lose an increment.
    await this.m.UsageDaily.bulkWrite(
      [...sums.values()].map(({ day, discordId, model, ...inc }) => ({
        updateOne: { filter: { day, discordId, model }, update: { $inc: inc }, upsert: true },
      })),
      { ordered: false },
    );
  }

  async listUsage(discordId: string, limit: number): Promise<UsageRecord[]> {
    if (limit <= 0) return [];
    const docs = await this.m.Usage.find({ discordId })
      .sort({ createdAt: -1, _id: -1 })
      .limit(limit)
      .lean<UsageDoc[]>();
    return docs.map(toUsage);
  }

  async dailyUsage(filter: { discordId?: string; fromDay: string; toDay: string }): Promise<DailyUsage[]> {
    const query: { day: { $gte: string; $lte: string }; discordId?: string } = {
      day: { $gte: filter.fromDay, $lte: filter.toDay },
    };
    if (filter.discordId !== undefined) query.discordId = filter.discordId;
    const docs = await this.m.UsageDaily.find(query).sort({ day: 1, model: 1, discordId: 1 }).lean<UsageDailyDoc[]>();
    return docs.map(toDaily);
  }

  async topUsers(
    day: string,
    limit: number,
  ): Promise<Array<{ discordId: string; requests: number; chargedTokens: number }>> {
    if (limit <= 0) return [];
    const rows = await this.m.UsageDaily.aggregate<{ _id: string; requests: number; chargedTokens: number }>([
      { $match: { day } },
      { $group: { _id: '$discordId', requests: { $sum: '$requests' }, chargedTokens: { $sum: '$chargedTokens' } } },
      { $sort: { chargedTokens: -1, _id: 1 } },
      { $limit: limit },
    ]);
    return rows.map((r) => ({ discordId: r._id, requests: r.requests, chargedTokens: r.chargedTokens }));
  }

  async modelTotals(day: string): Promise<
    Array<{
      model: string;
      users: number;
      requests: number;
      promptTokens: number;
      completionTokens: number;
      chargedTokens: number;
    }>
  > {
    // One aggregate per (day, user, model): counting them per model counts the model's users.
    const rows = await this.m.UsageDaily.aggregate<{
      _id: string;
      users: number;
      requests: number;
      promptTokens: number;
      completionTokens: number;
      chargedTokens: number;
    }>([
      { $match: { day } },
      {
        $group: {
          _id: '$model',
          users: { $sum: 1 },
          requests: { $sum: '$requests' },
          promptTokens: { $sum: '$promptTokens' },
          completionTokens: { $sum: '$completionTokens' },
          chargedTokens: { $sum: '$chargedTokens' },
        },
      },
      { $sort: { _id: 1 } },
    ]);
    return rows.map(({ _id, ...totals }) => ({ model: _id, ...totals }));
  }

  async purgeUsage(before: Date): Promise<number> {
    // Batches by _id rather than one unbounded deleteMany: each command stays short on the server
    // and a large backlog cannot hold one operation (and its replication) for minutes.
    let removed = 0;
    for (;;) {
      const batch = await this.m.Usage.find({ createdAt: { $lt: before } }, { _id: 1 })
        .hint(USAGE_TTL_INDEX)
        .limit(PURGE_BATCH_DOCS)
        .lean<Array<{ _id: string }>>();
      if (batch.length === 0) break;
      const res = await this.m.Usage.deleteMany({ _id: { $in: batch.map((d) => d._id) }, createdAt: { $lt: before } });
      removed += res.deletedCount;
      if (batch.length < PURGE_BATCH_DOCS) break;
    }
    return removed;
  }

  async appendAudit(entry: AuditEntry): Promise<void> {
    const doc: AuditDoc = {
      _id: entry.id,
      at: entry.at,
      actor: entry.actor,
      action: entry.action,
      target: entry.target,
      reason: entry.reason,
      meta: entry.meta,
      seq: new Types.ObjectId(),
    };
    await this.m.Audit.create(doc);
  }

  async listAudit(filter: { target?: string; limit: number }): Promise<AuditEntry[]> {
    if (filter.limit <= 0) return [];
    const query = filter.target === undefined ? {} : { target: filter.target };
    const docs = await this.m.Audit.find(query).sort({ at: -1, seq: -1 }).limit(filter.limit).lean<AuditDoc[]>();
    return docs.map(toAudit);
  }

  async ping(): Promise<void> {
    await database(this.conn).command({ ping: 1 });
  }

  async close(): Promise<void> {
    // destroy() = close() plus dropping the connection from mongoose's global list; idempotent.
    await this.conn.destroy();
  }
}

function database(conn: Connection) {
  if (conn.db === undefined) throw new Error('MongoDB connection is not open');
  return conn.db;
}

async function openConnection(uri: string, serverSelectionTimeoutMS: number): Promise<Connection> {
  // No `cause` on the errors thrown here: driver errors can carry the topology description, and
  // with it the URI. The messages are scrubbed of it instead.
  let lastError: unknown;
  for (let attempt = 0; attempt < CONNECT_ATTEMPTS; attempt++) {
    if (attempt > 0) await sleep(CONNECT_BACKOFF_MS * 2 ** (attempt - 1));
    // Indexes are built explicitly in connect(), where failures surface; commands are not buffered
    // while disconnected, so a MongoDB outage fails requests after server selection, not later.
    const conn = createConnection(uri, {
      serverSelectionTimeoutMS,
      autoIndex: false,
      autoCreate: false,
      bufferCommands: false,
    });
    try {
      return await conn.asPromise();
    } catch (err) {
      // Releasing the half-open client must not replace the connect error.
      await conn.destroy().catch(() => {});
      // A malformed URI will not get better with retries.
      if (err instanceof Error && err.name === 'MongoParseError') {
        throw new Error(`Invalid MongoDB URI ${redactMongoUri(uri)}: ${scrub(err.message, uri)}`);
      }
      lastError = err;
    }
  }
  const reason = lastError instanceof Error ? `: ${scrub(lastError.message, uri)}` : '';
  throw new Error(`MongoDB is unreachable at ${redactMongoUri(uri)} after ${CONNECT_ATTEMPTS} attempts${reason}`);
}

/**
 * Brings an existing TTL index to the configured retention in place (collMod), so createIndexes
 * does not fail on changed options and no index has to be rebuilt on a large collection.
 */
async function alignUsageTtl(conn: Connection, expireAfterSeconds: number): Promise<void> {
  const db = database(conn);
  const indexes = await db
    .collection(COLLECTIONS.usage)
    .indexes()
    .catch((err: unknown) => {
      if (asMongoError(err).code === NAMESPACE_NOT_FOUND) return [];
      throw err;
    });
  const ttl = indexes.find((i) => i.name === USAGE_TTL_INDEX);
  if (ttl !== undefined && ttl.expireAfterSeconds !== expireAfterSeconds) {
    await db.command({ collMod: COLLECTIONS.usage, index: { name: USAGE_TTL_INDEX, expireAfterSeconds } });
  }
}
