// The MongoDB Store: the shared contract plus what only MongoDB has (indexes, $inc aggregates under
// concurrency). Needs MONGODB_URI or a mongod on PATH; without either, the leg is reported as skipped.
import { randomInt } from 'node:crypto';
import { createConnection, mongo } from 'mongoose';
import { afterAll, describe, expect, it } from 'vitest';
import { createModels, LIVE_KEY_INDEX, USAGE_TTL_INDEX } from '../../src/adapters/mongo/models.js';
import { insertOutcome, MongoStore, redactMongoUri } from '../../src/adapters/mongo/mongo-store.js';
import { newId } from '../../src/domain/ids.js';
import { generateKey } from '../../src/domain/keys.js';
import type { UsageRecord } from '../../src/domain/types.js';
import { dropDatabase, mongoTarget, uniqueDatabaseName, withDatabase } from '../helpers/mongo.js';
import { type OpenStore, runStoreContract } from './store.contract.js';

const RETENTION_DAYS = 30;

describe('MongoStore without a server', () => {
  it('reports an unreachable server by its redacted URI, never the password', async () => {
    const err = await MongoStore.connect('mongodb://user:secret@127.0.0.1:1/x', {
      retentionDays: 1,
      serverSelectionTimeoutMS: 200,
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    const e = err as Error;
    expect(e.message).toContain('MongoDB is unreachable at mongodb://127.0.0.1:1/x');
    for (const text of [e.message, String(e.stack), String(e.cause), JSON.stringify(e)]) {
      expect(text).not.toContain('secret');
      expect(text).not.toContain('user:');
    }
  });

  it('refuses a malformed URI at once, without echoing its password', async () => {
    const err = await MongoStore.connect('mongodb://user:p@ss@127.0.0.1:1/x', { retentionDays: 1 }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toMatch(/^Invalid MongoDB URI mongodb:\/\/127\.0\.0\.1:1\/x: /);
    expect((err as Error).message).not.toContain('p@ss');
  });

  it('redacts credentials and the query string from URIs', () => {
    expect(redactMongoUri('mongodb://user:pw@h1:27017,h2:27018/db?replicaSet=rs&authSource=admin')).toBe(
      'mongodb://h1:27017,h2:27018/db',
    );
    expect(redactMongoUri('mongodb+srv://u:p@cluster0.example.net/guildgate')).toBe(
      'mongodb+srv://cluster0.example.net/guildgate',
    );
    // Unescaped reserved characters in a password must not leak any part of it.
    expect(redactMongoUri('mongodb://u:p@ss/w?rd@db.local:27017/app')).toBe('mongodb://db.local:27017/app');
    expect(redactMongoUri('mongodb://127.0.0.1:27017')).toBe('mongodb://127.0.0.1:27017');
    expect(redactMongoUri('mongodb://h/db?authMechanismProperties=TOKEN:a@b=c')).toBe('mongodb://***');
    expect(redactMongoUri('not a uri with user:secret')).not.toContain('secret');
  });

  it('counts exactly the records an unordered insert stored', () => {
    // Shaped as the driver reports an unordered insertMany with write errors: insertedIds holds the
    // indexes that were stored, writeErrors the ones that were not.
    const bulkError = (codes: Record<number, number>, inserted: number[]) =>
      new mongo.MongoBulkWriteError(
        {
          message: 'E11000 duplicate key error',
          code: 11000,
          writeErrors: Object.entries(codes).map(([index, code]) => ({ index: Number(index), code })),
        } as unknown as mongo.AnyError,
        { insertedIds: Object.fromEntries(inserted.map((i) => [i, `req_${i}`])) } as unknown as mongo.BulkWriteResult,
      );

    expect(insertOutcome(bulkError({ 1: 11000, 3: 11000 }, [0, 2]), 4)).toEqual({ stored: [0, 2], failure: null });

    const mixed = bulkError({ 1: 11000, 2: 121 }, [0]);
    expect(insertOutcome(mixed, 3)).toEqual({ stored: [0], failure: mixed });

    // A lost connection says nothing reliable about what was stored: count nothing, raise it.
    const network = new mongo.MongoNetworkError('connection reset');
    expect(insertOutcome(network, 3)).toEqual({ stored: [], failure: network });
  });

  it('points a URI at another database, keeping where the user authenticates', () => {
    expect(withDatabase('mongodb://127.0.0.1:27017/guildgate_test', 'x1')).toBe('mongodb://127.0.0.1:27017/x1');
    expect(withDatabase('mongodb://127.0.0.1:27017', 'x2')).toBe('mongodb://127.0.0.1:27017/x2');
    expect(withDatabase('mongodb://u:p@h1,h2/app?replicaSet=rs', 'x3')).toBe(
      'mongodb://u:p@h1,h2/x3?replicaSet=rs&authSource=app',
    );
    expect(withDatabase('mongodb://u:p@h?authSource=admin', 'x4')).toBe('mongodb://u:p@h/x4?authSource=admin');
  });
});

const target = await mongoTarget();

if ('skip' in target) {
  console.warn(`\n${'!'.repeat(100)}\n!! ${target.skip}\n${'!'.repeat(100)}\n`);
  it.skip(target.skip, () => {});
} else {
  const base = target;
  afterAll(() => base.stop());

  /** A store on a database of its own, dropped on cleanup. */
  const open = async (retentionDays = RETENTION_DAYS) => {
    const uri = withDatabase(base.uri, uniqueDatabaseName());
    const store = await MongoStore.connect(uri, { retentionDays });
    return {
      uri,
      store,
      cleanup: async () => {
        await store.close();
        await dropDatabase(uri);
      },
    };
  };

  /** The Store's models on a second connection, to look at the database without the adapter. */
  const inspect = async (uri: string) => {
    const conn = await createConnection(uri, { autoIndex: false, autoCreate: false }).asPromise();
    return { conn, models: createModels(conn, { retentionDays: RETENTION_DAYS }) };
  };

  const openContract: OpenStore = async () => {
    const { store, cleanup } = await open();
    return { store, cleanup };
  };
  runStoreContract('mongo', openContract);

  const snowflake = (): string => `${randomInt(1e8, 1e9)}${randomInt(1e9, 1e10)}`;
  const usage = (discordId: string, chargedTokens: number): UsageRecord => ({
    requestId: newId('req'),
    keyId: newId('key'),
    discordId,
    model: 'gpt-4o-mini',
    upstream: 'openai',
    endpoint: 'chat.completions',
    promptTokens: 2,
    completionTokens: 1,
    chargedTokens,
    estimated: false,
    status: 'ok',
    httpStatus: 200,
    latencyMs: 10,
    stream: false,
    createdAt: new Date('2024-05-01T10:00:00.000Z'),
  });

  describe('MongoStore specifics', () => {
    it('enforces one live key per user in the database itself, even past the adapter', async () => {
      const { uri, cleanup } = await open();
      const { conn, models } = await inspect(uri);
      try {
        const indexes = await models.Keys.listIndexes();
        expect(indexes).toContainEqual(
          expect.objectContaining({
            name: LIVE_KEY_INDEX,
            key: { discordId: 1 },
            unique: true,
            partialFilterExpression: { live: true },
          }),
        );

        const owner = snowflake();
        const doc = (live: boolean) => {
          const { hash, prefix } = generateKey();
          return {
            _id: newId('key'),
            hash,
            prefix,
            discordId: owner,
            tier: 'free',
            status: live ? ('active' as const) : ('revoked' as const),
            statusReason: null,
            createdAt: new Date(),
            expiresAt: null,
            revokedAt: live ? null : new Date(),
            live,
          };
        };
        await models.Keys.create(doc(true));
        await expect(models.Keys.create(doc(true))).rejects.toHaveProperty('code', 11000);
        await models.Keys.create(doc(false));
        expect(await models.Keys.countDocuments({ discordId: owner })).toBe(2);
      } finally {
        await conn.destroy();
        await cleanup();
      }
    });

    it('expires request records with a TTL index set to the retention, updated when it changes', async () => {
      const first = await open(30);
      const { conn, models } = await inspect(first.uri);
      try {
        const ttl = async () => (await models.Usage.listIndexes()).find((i) => i.name === USAGE_TTL_INDEX);
        expect(await ttl()).toMatchObject({ key: { createdAt: 1 }, expireAfterSeconds: 30 * 86_400 });

        // A restart with another retention on the same database adjusts the index in place.
        const again = await MongoStore.connect(first.uri, { retentionDays: 7 });
        await again.close();
        expect(await ttl()).toMatchObject({ key: { createdAt: 1 }, expireAfterSeconds: 7 * 86_400 });
      } finally {
        await conn.destroy();
        await first.cleanup();
      }
    });

    it('sums concurrent usage batches exactly ($inc upserts, no read-modify-write)', async () => {
      const { store, cleanup } = await open();
      try {
        const user = snowflake();
        const day = '2999-12-31';
        const batches = Array.from({ length: 10 }, (_, b) =>
          Array.from({ length: 5 }, (_, i) => usage(user, b * 5 + i + 1)),
        );
        await Promise.all(batches.map((batch) => store.insertUsage(batch, () => day)));
        expect(await store.dailyUsage({ discordId: user, fromDay: day, toDay: day })).toEqual([
          {
            day,
            discordId: user,
            model: 'gpt-4o-mini',
            requests: 50,
            promptTokens: 100,
            completionTokens: 50,
            chargedTokens: (50 * 51) / 2,
          },
        ]);
        expect(await store.listUsage(user, 100)).toHaveLength(50);
      } finally {
        await cleanup();
      }
    });

    it('counts a batch retried concurrently exactly once', async () => {
      const { store, cleanup } = await open();
      try {
        const user = snowflake();
        const day = '2999-12-30';
        const batch = Array.from({ length: 20 }, (_, i) => usage(user, i + 1));
        await Promise.all(Array.from({ length: 5 }, () => store.insertUsage(batch, () => day)));
        const [agg] = await store.dailyUsage({ discordId: user, fromDay: day, toDay: day });
        expect(agg).toMatchObject({ requests: 20, chargedTokens: (20 * 21) / 2 });
      } finally {
        await cleanup();
      }
    });

    it('leaks no _id or version key into domain records', async () => {
      const { store, cleanup } = await open();
      try {
        const user = snowflake();
        await store.ensureUser(user, new Date());
        await store.insertUsage([usage(user, 1)], () => '2999-12-29');
        await store.appendAudit({
          id: newId('aud'),
          at: new Date(),
          actor: 'cli',
          action: 'x',
          target: user,
          reason: null,
          meta: {},
        });
        const records = [
          await store.getUser(user),
          ...(await store.listUsage(user, 1)),
          ...(await store.listAudit({ target: user, limit: 1 })),
          ...(await store.dailyUsage({ discordId: user, fromDay: '2999-12-29', toDay: '2999-12-29' })),
        ];
        expect(records).toHaveLength(4);
        for (const r of records) {
          expect(Object.keys(r ?? {})).not.toContain('_id');
          expect(Object.keys(r ?? {})).not.toContain('__v');
        }
        // An empty meta object survives (mongoose would minimize it away by default).
        expect((await store.listAudit({ target: user, limit: 1 }))[0]?.meta).toEqual({});
      } finally {
        await cleanup();
      }
    });
  });
}
