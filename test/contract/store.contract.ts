// The Store contract: every adapter (SQLite, MongoDB, ...) must pass this suite unchanged.
// Each test gets a fresh store and still uses unique ids, so a shared backend cannot mask a bug.
import { randomInt } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LiveKeyExistsError } from '../../src/domain/errors.js';
import { newId } from '../../src/domain/ids.js';
import { generateKey } from '../../src/domain/keys.js';
import type { Store } from '../../src/domain/ports.js';
import type { AuditEntry, KeyRecord, UsageRecord } from '../../src/domain/types.js';

export type OpenStore = () => Promise<{ store: Store; cleanup: () => Promise<void> }>;

const snowflake = (): string => `${randomInt(1e8, 1e9)}${randomInt(1e9, 1e10)}`;
/** A day no other test uses, for queries that span all users. */
const uniqueDay = (): string =>
  `${randomInt(2100, 3000)}-${String(randomInt(1, 13)).padStart(2, '0')}-${String(randomInt(1, 29)).padStart(2, '0')}`;
/** Budget day of a record in UTC, as the relay would compute it for `budgetTimeZone: UTC`. */
const utcDay = (r: UsageRecord): string => r.createdAt.toISOString().slice(0, 10);
const at = (iso: string): Date => new Date(iso);

function makeKey(discordId: string, overrides: Partial<KeyRecord> = {}): KeyRecord {
  const { hash, prefix } = generateKey();
  return {
    id: newId('key'),
    hash,
    prefix,
    discordId,
    tier: 'free',
    status: 'active',
    statusReason: null,
    createdAt: at('2024-05-01T12:34:56.789Z'),
    expiresAt: null,
    revokedAt: null,
    ...overrides,
  };
}

function makeUsage(discordId: string, overrides: Partial<UsageRecord> = {}): UsageRecord {
  return {
    requestId: newId('req'),
    keyId: newId('key'),
    discordId,
    model: 'gpt-4o-mini',
    upstream: 'openai',
    endpoint: 'chat.completions',
    promptTokens: 10,
    completionTokens: 5,
    chargedTokens: 15,
    estimated: false,
    status: 'ok',
    httpStatus: 200,
    latencyMs: 321,
    stream: false,
    createdAt: at('2024-05-01T10:00:00.123Z'),
    ...overrides,
  };
}

function makeAudit(target: string, overrides: Partial<AuditEntry> = {}): AuditEntry {
  return {
    id: newId('aud'),
    at: at('2024-05-01T09:00:00.001Z'),
    actor: 'cli',
    action: 'key.revoke',
    target,
    reason: null,
    meta: null,
    ...overrides,
  };
}

export function runStoreContract(name: string, open: OpenStore): void {
  describe(`Store contract: ${name}`, () => {
    let store: Store;
    let cleanup: () => Promise<void>;

    beforeEach(async () => {
      ({ store, cleanup } = await open());
    });

    afterEach(async () => {
      await cleanup();
    });

    describe('users', () => {
      it('ensureUser creates the user once and keeps the first createdAt', async () => {
        const id = snowflake();
        const first = await store.ensureUser(id, at('2024-01-01T00:00:00.001Z'));
        expect(first).toEqual({
          discordId: id,
          createdAt: at('2024-01-01T00:00:00.001Z'),
          bannedAt: null,
          banReason: null,
        });
        const second = await store.ensureUser(id, at('2024-06-01T00:00:00.000Z'));
        expect(second.createdAt).toEqual(at('2024-01-01T00:00:00.001Z'));
        expect(await store.getUser(id)).toEqual(first);
      });

      it('getUser returns null for an unknown user', async () => {
        expect(await store.getUser(snowflake())).toBeNull();
      });

      it('setUserBan sets and clears the ban, and returns null for an unknown user', async () => {
        const id = snowflake();
        await store.ensureUser(id, at('2024-01-01T00:00:00.000Z'));
        const banned = await store.setUserBan(id, { at: at('2024-02-02T02:02:02.222Z'), reason: 'spam' });
        expect(banned).toMatchObject({ discordId: id, bannedAt: at('2024-02-02T02:02:02.222Z'), banReason: 'spam' });
        expect(await store.getUser(id)).toEqual(banned);

        const cleared = await store.setUserBan(id, null);
        expect(cleared).toMatchObject({ discordId: id, bannedAt: null, banReason: null });
        expect(cleared?.createdAt).toEqual(at('2024-01-01T00:00:00.000Z'));

        expect(await store.setUserBan(snowflake(), { at: new Date(), reason: 'x' })).toBeNull();
      });
    });

    describe('keys', () => {
      it('round-trips a key by id and by hash, with Dates (ms precision) and nulls', async () => {
        const key = makeKey(snowflake());
        await store.insertKey(key);
        const byId = await store.getKeyById(key.id);
        expect(byId).toEqual(key);
        expect(byId?.createdAt).toBeInstanceOf(Date);
        expect(byId?.createdAt.getTime()).toBe(key.createdAt.getTime());
        expect(await store.getKeyByHash(key.hash)).toEqual(key);
      });

      it('round-trips non-null optional fields', async () => {
        const key = makeKey(snowflake(), {
          status: 'revoked',
          statusReason: 'leaked in a public repo',
          expiresAt: at('2025-01-01T00:00:00.999Z'),
          revokedAt: at('2024-05-02T00:00:00.001Z'),
          tier: 'pro',
        });
        await store.insertKey(key);
        expect(await store.getKeyById(key.id)).toEqual(key);
      });

      it('returns null for unknown ids and hashes', async () => {
        expect(await store.getKeyById(newId('key'))).toBeNull();
        expect(await store.getKeyByHash(generateKey().hash)).toBeNull();
      });

      it('refuses a second live key for the same user with LiveKeyExistsError', async () => {
        const owner = snowflake();
        await store.insertKey(makeKey(owner));
        const second = makeKey(owner);
        const err = await store.insertKey(second).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(LiveKeyExistsError);
        expect((err as LiveKeyExistsError).discordId).toBe(owner);
        expect(await store.getKeyById(second.id)).toBeNull();
      });

      it('counts a suspended key as live', async () => {
        const owner = snowflake();
        await store.insertKey(makeKey(owner, { status: 'suspended' }));
        await expect(store.insertKey(makeKey(owner))).rejects.toBeInstanceOf(LiveKeyExistsError);
        await expect(store.insertKey(makeKey(owner, { status: 'suspended' }))).rejects.toBeInstanceOf(
          LiveKeyExistsError,
        );
      });

      it('lets revoked keys coexist with one live key', async () => {
        const owner = snowflake();
        const old1 = makeKey(owner, { status: 'revoked', revokedAt: new Date() });
        const old2 = makeKey(owner, { status: 'revoked', revokedAt: new Date() });
        const live = makeKey(owner);
        await store.insertKey(old1);
        await store.insertKey(old2);
        await store.insertKey(live);
        expect(await store.listKeys({ discordId: owner })).toHaveLength(3);
      });

      it('allows a new live key after the old one is revoked', async () => {
        const owner = snowflake();
        const first = makeKey(owner);
        await store.insertKey(first);
        await store.updateKey(first.id, { status: 'revoked', revokedAt: new Date() });
        const next = makeKey(owner);
        await store.insertKey(next);
        expect((await store.getKeyById(next.id))?.status).toBe('active');
      });

      it('refuses a duplicate hash with a plain Error', async () => {
        const key = makeKey(snowflake());
        await store.insertKey(key);
        const clash = makeKey(snowflake(), { hash: key.hash });
        const err = await store.insertKey(clash).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(Error);
        expect(err).not.toBeInstanceOf(LiveKeyExistsError);
        expect(await store.getKeyById(clash.id)).toBeNull();
      });

      it('lets exactly one of many concurrent inserts for one user win', async () => {
        const owner = snowflake();
        const attempts = Array.from({ length: 20 }, () => makeKey(owner));
        const results = await Promise.allSettled(attempts.map((k) => store.insertKey(k)));
        const won = results.filter((r) => r.status === 'fulfilled');
        const lost = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
        expect(won).toHaveLength(1);
        expect(lost).toHaveLength(19);
        for (const r of lost) expect(r.reason).toBeInstanceOf(LiveKeyExistsError);
        const stored = await store.listKeys({ discordId: owner });
        expect(stored).toHaveLength(1);
        expect(stored[0]?.status).toBe('active');
      });

      it('lists keys newest first, filtered by owner and/or status, with a limit', async () => {
        const a = snowflake();
        const b = snowflake();
        const aOld = makeKey(a, { status: 'revoked', createdAt: at('2024-01-01T00:00:00.000Z') });
        const aMid = makeKey(a, { status: 'revoked', createdAt: at('2024-02-01T00:00:00.000Z') });
        const aNew = makeKey(a, { createdAt: at('2024-03-01T00:00:00.000Z') });
        const bKey = makeKey(b, { status: 'suspended', createdAt: at('2024-02-15T00:00:00.000Z') });
        for (const k of [aMid, bKey, aNew, aOld]) await store.insertKey(k);

        expect(await store.listKeys({ discordId: a })).toEqual([aNew, aMid, aOld]);
        expect(await store.listKeys({ discordId: a, status: 'revoked' })).toEqual([aMid, aOld]);
        expect(await store.listKeys({ discordId: a, limit: 2 })).toEqual([aNew, aMid]);
        expect(await store.listKeys({ discordId: b })).toEqual([bKey]);
        expect(await store.listKeys({ discordId: snowflake() })).toEqual([]);

        const suspended = await store.listKeys({ status: 'suspended' });
        expect(suspended).toContainEqual(bKey);
        expect(suspended.every((k) => k.status === 'suspended')).toBe(true);

        const all = await store.listKeys({});
        expect(all).toEqual(expect.arrayContaining([aNew, aMid, aOld, bKey]));
        const times = all.map((k) => k.createdAt.getTime());
        expect(times).toEqual([...times].sort((x, y) => y - x));
      });

      it('lists at most 100 keys when no limit is given', async () => {
        const owner = snowflake();
        for (let i = 0; i < 105; i++) {
          await store.insertKey(makeKey(owner, { status: 'revoked', createdAt: new Date(Date.UTC(2024, 0, 1) + i) }));
        }
        const listed = await store.listKeys({ discordId: owner });
        expect(listed).toHaveLength(100);
        expect(listed[0]?.createdAt).toEqual(new Date(Date.UTC(2024, 0, 1) + 104));
      });

      it('updateKey applies the patch, keeps other fields and returns the record', async () => {
        const key = makeKey(snowflake(), { expiresAt: at('2030-01-01T00:00:00.000Z') });
        await store.insertKey(key);
        const revokedAt = at('2024-05-03T00:00:00.456Z');
        const updated = await store.updateKey(key.id, {
          status: 'revoked',
          statusReason: 'rotated',
          revokedAt,
          expiresAt: null,
        });
        const expected: KeyRecord = { ...key, status: 'revoked', statusReason: 'rotated', revokedAt, expiresAt: null };
        expect(updated).toEqual(expected);
        expect(await store.getKeyById(key.id)).toEqual(expected);

        const retiered = await store.updateKey(key.id, { tier: 'pro' });
        expect(retiered).toEqual({ ...expected, tier: 'pro' });
      });

      it('updateKey honours ifStatus and returns null when the condition fails', async () => {
        const key = makeKey(snowflake());
        await store.insertKey(key);

        expect(await store.updateKey(key.id, { status: 'suspended' }, ['revoked'])).toBeNull();
        expect((await store.getKeyById(key.id))?.status).toBe('active');

        const suspended = await store.updateKey(key.id, { status: 'suspended', statusReason: 'abuse' }, [
          'active',
          'revoked',
        ]);
        expect(suspended).toMatchObject({ status: 'suspended', statusReason: 'abuse' });

        // Only an active key may be suspended: the second attempt sees 'suspended' and does nothing.
        expect(await store.updateKey(key.id, { statusReason: 'again' }, ['active'])).toBeNull();
        expect(await store.updateKey(key.id, { status: 'active' }, [])).toBeNull();
        expect((await store.getKeyById(key.id))?.statusReason).toBe('abuse');
      });

      it('updateKey returns null for an unknown key', async () => {
        expect(await store.updateKey(newId('key'), { status: 'revoked' })).toBeNull();
        expect(await store.updateKey(newId('key'), { status: 'revoked' }, ['active'])).toBeNull();
      });

      it('updateKey refuses to make a revoked key live while another live key exists', async () => {
        const owner = snowflake();
        const old = makeKey(owner, { status: 'revoked', revokedAt: new Date() });
        const live = makeKey(owner);
        await store.insertKey(old);
        await store.insertKey(live);
        const err = await store.updateKey(old.id, { status: 'active', revokedAt: null }).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(LiveKeyExistsError);
        expect((err as LiveKeyExistsError).discordId).toBe(owner);
        expect(await store.getKeyById(old.id)).toEqual(old);

        await store.updateKey(live.id, { status: 'revoked' });
        expect(await store.updateKey(old.id, { status: 'active', revokedAt: null })).toMatchObject({
          status: 'active',
          revokedAt: null,
        });
      });
    });

    describe('usage', () => {
      it('stores request records and lists them newest first with a limit', async () => {
        const user = snowflake();
        const r1 = makeUsage(user, { createdAt: at('2024-05-01T10:00:00.001Z') });
        const r2 = makeUsage(user, {
          createdAt: at('2024-05-01T11:00:00.002Z'),
          upstream: null,
          estimated: true,
          stream: true,
          status: 'aborted',
          httpStatus: 499,
          endpoint: 'completions',
        });
        const r3 = makeUsage(user, { createdAt: at('2024-05-02T09:00:00.003Z'), endpoint: 'embeddings' });
        const other = makeUsage(snowflake());
        await store.insertUsage([r2, other, r1, r3], utcDay);

        expect(await store.listUsage(user, 10)).toEqual([r3, r2, r1]);
        expect(await store.listUsage(user, 2)).toEqual([r3, r2]);
        const [newest] = await store.listUsage(user, 1);
        expect(newest?.createdAt).toBeInstanceOf(Date);
        expect(await store.listUsage(snowflake(), 10)).toEqual([]);
      });

      it('adds records to daily aggregates keyed by dayOf(record)', async () => {
        const user = snowflake();
        const day = uniqueDay();
        await store.insertUsage(
          [
            makeUsage(user, { promptTokens: 10, completionTokens: 5, chargedTokens: 15 }),
            makeUsage(user, { promptTokens: 1, completionTokens: 2, chargedTokens: 6 }),
            makeUsage(user, { model: 'embed', promptTokens: 7, completionTokens: 0, chargedTokens: 7 }),
          ],
          () => day,
        );
        expect(await store.dailyUsage({ discordId: user, fromDay: day, toDay: day })).toEqual([
          { day, discordId: user, model: 'embed', requests: 1, promptTokens: 7, completionTokens: 0, chargedTokens: 7 },
          {
            day,
            discordId: user,
            model: 'gpt-4o-mini',
            requests: 2,
            promptTokens: 11,
            completionTokens: 7,
            chargedTokens: 21,
          },
        ]);
      });

      it('does not store or count the same requestId twice', async () => {
        const user = snowflake();
        const day = uniqueDay();
        const a = makeUsage(user, { chargedTokens: 100 });
        const b = makeUsage(user, { chargedTokens: 10 });
        await store.insertUsage([a, b], () => day);
        // A retried batch, overlapping with one new record and a duplicate inside the batch itself.
        const c = makeUsage(user, { chargedTokens: 1 });
        await store.insertUsage([a, b, c, c], () => day);
        await store.insertUsage([a], () => day);

        expect(await store.listUsage(user, 100)).toHaveLength(3);
        const [agg] = await store.dailyUsage({ discordId: user, fromDay: day, toDay: day });
        expect(agg).toMatchObject({ requests: 3, chargedTokens: 111, promptTokens: 30, completionTokens: 15 });
      });

      it('treats an empty batch as a no-op', async () => {
        const user = snowflake();
        await store.insertUsage([], () => {
          throw new Error('dayOf must not be called for an empty batch');
        });
        expect(await store.listUsage(user, 10)).toEqual([]);
      });

      it('dailyUsage covers an inclusive day range, optionally for one user, sorted by day then model', async () => {
        const u1 = snowflake();
        const u2 = snowflake();
        const rec = (user: string, iso: string, model: string) =>
          makeUsage(user, { model, createdAt: at(iso), promptTokens: 1, completionTokens: 1, chargedTokens: 2 });
        await store.insertUsage(
          [
            rec(u1, '3050-03-09T23:59:59.999Z', 'm-a'),
            rec(u1, '3050-03-10T00:00:00.000Z', 'm-b'),
            rec(u1, '3050-03-10T05:00:00.000Z', 'm-a'),
            rec(u2, '3050-03-11T12:00:00.000Z', 'm-a'),
            rec(u1, '3050-03-12T23:59:59.999Z', 'm-a'),
            rec(u1, '3050-03-13T00:00:00.000Z', 'm-a'),
          ],
          utcDay,
        );

        const mine = await store.dailyUsage({ discordId: u1, fromDay: '3050-03-10', toDay: '3050-03-12' });
        expect(mine.map((d) => [d.day, d.model, d.requests])).toEqual([
          ['3050-03-10', 'm-a', 1],
          ['3050-03-10', 'm-b', 1],
          ['3050-03-12', 'm-a', 1],
        ]);
        expect(mine.every((d) => d.discordId === u1)).toBe(true);

        const everyone = await store.dailyUsage({ fromDay: '3050-03-10', toDay: '3050-03-12' });
        expect(everyone.map((d) => [d.day, d.model, d.discordId])).toEqual([
          ['3050-03-10', 'm-a', u1],
          ['3050-03-10', 'm-b', u1],
          ['3050-03-11', 'm-a', u2],
          ['3050-03-12', 'm-a', u1],
        ]);
        expect(await store.dailyUsage({ fromDay: '3050-04-01', toDay: '3050-04-30' })).toEqual([]);
      });

      it('topUsers sums models per user and orders by charged tokens', async () => {
        const day = uniqueDay();
        const [small, big, mid] = [snowflake(), snowflake(), snowflake()];
        await store.insertUsage(
          [
            makeUsage(small, { chargedTokens: 5 }),
            makeUsage(big, { chargedTokens: 300, model: 'm-a' }),
            makeUsage(big, { chargedTokens: 200, model: 'm-b' }),
            makeUsage(mid, { chargedTokens: 100 }),
            makeUsage(mid, { chargedTokens: 50 }),
          ],
          () => day,
        );
        expect(await store.topUsers(day, 10)).toEqual([
          { discordId: big, requests: 2, chargedTokens: 500 },
          { discordId: mid, requests: 2, chargedTokens: 150 },
          { discordId: small, requests: 1, chargedTokens: 5 },
        ]);
        expect(await store.topUsers(day, 1)).toEqual([{ discordId: big, requests: 2, chargedTokens: 500 }]);
        expect(await store.topUsers(uniqueDay(), 10)).toEqual([]);
      });

      it('purgeUsage deletes older request records only and keeps the aggregates', async () => {
        const user = snowflake();
        const day = uniqueDay();
        const old1 = makeUsage(user, { createdAt: at('1971-01-01T00:00:00.000Z') });
        const old2 = makeUsage(user, { createdAt: at('1971-01-01T23:59:59.998Z') });
        const edge = makeUsage(user, { createdAt: at('1971-01-01T23:59:59.999Z') });
        const recent = makeUsage(user, { createdAt: at('1971-01-03T00:00:00.000Z') });
        await store.insertUsage([old1, old2, edge, recent], () => day);

        expect(await store.purgeUsage(at('1971-01-01T23:59:59.999Z'))).toBe(2);
        expect(await store.listUsage(user, 10)).toEqual([recent, edge]);
        expect(await store.purgeUsage(at('1971-01-01T23:59:59.999Z'))).toBe(0);
        const [agg] = await store.dailyUsage({ discordId: user, fromDay: day, toDay: day });
        expect(agg?.requests).toBe(4);
      });
    });

    describe('usage upkeep and totals', () => {
      it('purgeUsage clears a backlog bigger than one batch, exactly and only the expired records', async () => {
        const users = [snowflake(), snowflake(), snowflake()];
        const base = at('1962-03-01T00:00:00.000Z').getTime();
        const expired = Array.from({ length: 2_600 }, (_, i) =>
          makeUsage(users[i % 3]!, { createdAt: new Date(base + i * 1_000) }),
        );
        const cutoff = new Date(base + 2_600 * 1_000);
        const kept = Array.from({ length: 9 }, (_, i) =>
          makeUsage(users[i % 3]!, { createdAt: new Date(cutoff.getTime() + i) }),
        );
        await store.insertUsage([...kept, ...expired], utcDay);

        expect(await store.purgeUsage(cutoff)).toBe(2_600);
        const left = (await Promise.all(users.map((u) => store.listUsage(u, 10_000)))).flat();
        expect(left.map((r) => r.requestId).sort()).toEqual(kept.map((r) => r.requestId).sort());
        expect(await store.purgeUsage(cutoff)).toBe(0);
      });

      it("modelTotals equals the day's aggregates summed per model in memory, sorted by model", async () => {
        const day = uniqueDay();
        const otherDay = uniqueDay();
        const [u1, u2, u3] = [snowflake(), snowflake(), snowflake()];
        const rec = (user: string, model: string, prompt: number, completion: number) =>
          makeUsage(user, {
            model,
            promptTokens: prompt,
            completionTokens: completion,
            chargedTokens: prompt + 2 * completion,
          });
        await store.insertUsage(
          [
            rec(u1, 'm-b', 10, 1),
            rec(u1, 'm-b', 20, 2),
            rec(u2, 'm-b', 30, 3),
            rec(u1, 'm-a', 1, 1),
            rec(u3, 'M-c', 5, 0),
            rec(u3, 'm-a', 7, 7),
          ],
          () => day,
        );
        await store.insertUsage([rec(u2, 'm-a', 1_000, 1_000), rec(u2, 'm-z', 1, 1)], () => otherDay);

        // What `guildgate usage today` computed before the database did it.
        const inMemory = new Map<string, Record<string, number | string>>();
        for (const r of await store.dailyUsage({ fromDay: day, toDay: day })) {
          const m = inMemory.get(r.model) ?? {
            model: r.model,
            users: 0,
            requests: 0,
            promptTokens: 0,
            completionTokens: 0,
            chargedTokens: 0,
          };
          m.users = (m.users as number) + 1;
          m.requests = (m.requests as number) + r.requests;
          m.promptTokens = (m.promptTokens as number) + r.promptTokens;
          m.completionTokens = (m.completionTokens as number) + r.completionTokens;
          m.chargedTokens = (m.chargedTokens as number) + r.chargedTokens;
          inMemory.set(r.model, m);
        }

        const totals = await store.modelTotals(day);
        expect(totals).toEqual([...inMemory.values()]);
        expect(totals).toEqual([
          { model: 'M-c', users: 1, requests: 1, promptTokens: 5, completionTokens: 0, chargedTokens: 5 },
          { model: 'm-a', users: 2, requests: 2, promptTokens: 8, completionTokens: 8, chargedTokens: 24 },
          { model: 'm-b', users: 2, requests: 3, promptTokens: 60, completionTokens: 6, chargedTokens: 72 },
        ]);
        expect(await store.modelTotals(uniqueDay())).toEqual([]);
      });
    });

    describe('deleteUser', () => {
      it('removes the user, their keys, request records and aggregates, but keeps audit entries', async () => {
        const user = snowflake();
        const bystander = snowflake();
        const day = uniqueDay();
        await store.ensureUser(user, new Date());
        await store.ensureUser(bystander, new Date());
        const k1 = makeKey(user, { status: 'revoked' });
        const k2 = makeKey(user);
        const kb = makeKey(bystander);
        for (const k of [k1, k2, kb]) await store.insertKey(k);
        const theirs = [makeUsage(user), makeUsage(user), makeUsage(user, { model: 'other' })];
        const keep = makeUsage(bystander);
        await store.insertUsage([...theirs, keep], () => day);
        const audit = makeAudit(user, { meta: { keyId: k2.id } });
        await store.appendAudit(audit);

        expect(await store.deleteUser(user)).toEqual({ keys: 2, usageRecords: 3 });

        expect(await store.getUser(user)).toBeNull();
        expect(await store.getKeyById(k1.id)).toBeNull();
        expect(await store.getKeyByHash(k2.hash)).toBeNull();
        expect(await store.listKeys({ discordId: user })).toEqual([]);
        expect(await store.listUsage(user, 10)).toEqual([]);
        expect(await store.dailyUsage({ discordId: user, fromDay: day, toDay: day })).toEqual([]);
        expect(await store.listAudit({ target: user, limit: 10 })).toEqual([audit]);

        expect(await store.getUser(bystander)).not.toBeNull();
        expect(await store.getKeyById(kb.id)).toEqual(kb);
        expect(await store.listUsage(bystander, 10)).toEqual([keep]);
        expect(await store.topUsers(day, 10)).toEqual([{ discordId: bystander, requests: 1, chargedTokens: 15 }]);

        // The user may come back and get a fresh live key.
        await store.insertKey(makeKey(user));
      });

      it('returns zero counts for an unknown user', async () => {
        expect(await store.deleteUser(snowflake())).toEqual({ keys: 0, usageRecords: 0 });
      });
    });

    describe('audit', () => {
      it('lists entries newest first, by target, with a limit, and round-trips meta', async () => {
        const target = snowflake();
        const e1 = makeAudit(target, { at: at('2024-05-01T09:00:00.001Z'), meta: null });
        const e2 = makeAudit(target, {
          at: at('2024-05-01T09:00:00.002Z'),
          actor: 'discord:123',
          action: 'user.ban',
          reason: 'spam',
          meta: { keyId: 'key_x', count: 3, nested: { ok: true, list: [1, 'two', null] } },
        });
        const otherTarget = makeAudit(newId('key'), { at: at('2024-05-01T09:00:00.003Z') });
        for (const e of [e2, otherTarget, e1]) await store.appendAudit(e);

        expect(await store.listAudit({ target, limit: 10 })).toEqual([e2, e1]);
        expect(await store.listAudit({ target, limit: 1 })).toEqual([e2]);
        expect(await store.listAudit({ target: snowflake(), limit: 10 })).toEqual([]);
        expect(await store.listAudit({ limit: 10 })).toEqual([otherTarget, e2, e1]);
        expect((await store.listAudit({ limit: 10 }))[2]?.at).toBeInstanceOf(Date);
      });

      it('orders entries with the same timestamp by insertion, newest first', async () => {
        const target = newId('key');
        const when = at('2024-05-01T09:00:00.000Z');
        const entries = Array.from({ length: 5 }, (_, i) => makeAudit(target, { at: when, action: `step.${i}` }));
        for (const e of entries) await store.appendAudit(e);
        expect((await store.listAudit({ target, limit: 10 })).map((e) => e.action)).toEqual([
          'step.4',
          'step.3',
          'step.2',
          'step.1',
          'step.0',
        ]);
      });

      it('exposes no way to change or remove audit entries', () => {
        const methods = Object.keys(Object.getOwnPropertyDescriptors(Object.getPrototypeOf(store)));
        expect(methods.filter((m) => /audit/i.test(m)).sort()).toEqual(['appendAudit', 'listAudit']);
      });
    });

    describe('lifecycle', () => {
      it('ping resolves while the store is open', async () => {
        await expect(store.ping()).resolves.toBeUndefined();
      });

      it('close is idempotent', async () => {
        await store.close();
        await expect(store.close()).resolves.toBeUndefined();
      });
    });
  });
}
