// Cost cap ledgers (`cap:<unit>:<scope>` subjects) on every limits backend: tier shares on one
// shared ledger, settle to actual, and a lost day rebuilt from the store's usage records (real
// SQLite) after a process restart (in-process limiter) or Redis restarted empty.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryTokenBudget } from '../../src/adapters/memory/limits.js';
import { createRedis, type RedisClient, waitForReady } from '../../src/adapters/redis/client.js';
import { RedisTokenBudget } from '../../src/adapters/redis/limits.js';
import { SqliteStore } from '../../src/adapters/sqlite/sqlite-store.js';
import { budgetHistory } from '../../src/app/admission.js';
import { planCostCap } from '../../src/app/cost-cap.js';
import { buildConfig } from '../../src/config/load.js';
import { budgetDay } from '../../src/domain/budget-day.js';
import type { Store, TokenBudget } from '../../src/domain/ports.js';
import { type RedisServer, startRedis } from '../helpers/redis-server.js';
import { usageRecord } from '../helpers/usage.js';

const plan = planCostCap(
  buildConfig(
    {
      upstreams: { alpha: { baseUrl: 'https://a.example/v1' }, beta: { baseUrl: 'https://b.example/v1' } },
      models: {
        cheap: { routes: [{ upstream: 'alpha', model: 'c' }], price: { inputPerMTokens: 1, outputPerMTokens: 2 } },
        premium: {
          routes: [
            { upstream: 'beta', model: 'p' },
            { upstream: 'alpha', model: 'p' },
          ],
          tokenWeight: 3,
          price: { inputPerMTokens: 10, outputPerMTokens: 30 },
        },
      },
      costCap: { relay: { tokensPerDay: 100_000, currencyPerDay: 1 }, upstreams: { beta: { tokensPerDay: 50_000 } } },
    },
    {},
    'test',
  ),
)!;

interface Backend {
  /** A limiter as a fresh process or replica would have it. */
  budget(history?: (subject: string, day: string) => Promise<number>): Promise<TokenBudget>;
  /** Loses every ledger, as a restart of the process or of Redis does. */
  loseEverything(): Promise<void>;
}

let seq = 0;
const unique = (label: string) => `${label}-${++seq}-${Date.now()}`;

function runCostCapContract(name: string, backend: () => Backend): void {
  describe(`cost cap ledgers: ${name}`, () => {
    it('one ledger, several tier shares: the lower share is refused first, settle brings it back', async () => {
      const b = await backend().budget();
      const subject = `cap:tokens:${unique('relay')}`;
      const day = '2030-04-01';
      const at = (share: number) => Math.floor(1000 * share);
      expect(await b.reserve({ subject, day, requestId: 'big', min: 400, max: 700, limit: at(1) })).toEqual({
        ok: true,
        granted: 700,
        used: 700,
        limit: 1000,
      });
      // A tier with half the cap is over its share; a full-share tier gets what is left.
      expect(await b.reserve({ subject, day, requestId: 'low', min: 1, max: 10, limit: at(0.5) })).toMatchObject({
        ok: false,
        granted: 0,
      });
      expect(await b.reserve({ subject, day, requestId: 'top', min: 1, max: 500, limit: at(1) })).toMatchObject({
        ok: true,
        granted: 300,
      });
      // Both settle far below their reservation: the low tier fits again.
      await b.settle({ subject, day, requestId: 'big', actual: 200 });
      await b.settle({ subject, day, requestId: 'top', actual: 50 });
      expect(await b.used(subject, day)).toBe(250);
      expect(await b.reserve({ subject, day, requestId: 'low2', min: 1, max: 10, limit: at(0.5) })).toMatchObject({
        ok: true,
        granted: 10,
      });
    });

    it('a lost day is rebuilt per ledger from the usage records, with one store query for all ledgers', async () => {
      const store = SqliteStore.open(':memory:');
      try {
        const now = new Date();
        const day = budgetDay(now, 'UTC');
        const rec = (model: string, prompt: number, completion: number, weight: number) =>
          usageRecord({
            discordId: unique('user'),
            model,
            createdAt: now,
            promptTokens: prompt,
            completionTokens: completion,
            chargedTokens: Math.ceil(weight * (prompt + completion)),
          });
        await store.insertUsage(
          [rec('cheap', 1000, 500, 1), rec('cheap', 200, 0, 1), rec('premium', 100, 100, 3), rec('gone', 7, 0, 1)],
          (r) => budgetDay(r.createdAt, 'UTC'),
        );
        let queries = 0;
        const counted: Pick<Store, 'dailyUsage' | 'listAudit' | 'modelTotals'> = {
          dailyUsage: (f) => store.dailyUsage(f),
          listAudit: (f) => store.listAudit(f),
          modelTotals: (d) => {
            queries++;
            return store.modelTotals(d);
          },
        };
        const be = backend();
        await be.loseEverything();
        const b = await be.budget(budgetHistory(counted, plan));
        const probe = (subject: string) =>
          b.reserve({ subject, day, requestId: unique('probe'), min: 0, max: 0, limit: 1e12 });
        const [tokens, currency, beta] = await Promise.all([
          probe('cap:tokens:relay'),
          probe('cap:currency:relay'),
          probe('cap:tokens:upstream:beta'),
        ]);
        // Every model's charged tokens count for the relay, a model no longer configured too.
        expect(tokens.used).toBe(1500 + 200 + 600 + 7);
        // Currency in millionths: cheap 1,200 × 1 + 500 × 2; premium 100 × 10 + 100 × 30.
        expect(currency.used).toBe(1200 + 1000 + 1000 + 3000);
        // Only models whose primary route is beta count for beta.
        expect(beta.used).toBe(600);
        expect(queries).toBe(1);
      } finally {
        await store.close();
      }
    });
  });
}

// A MemoryTokenBudget is one process: one built after the loss starts in the middle of today.
runCostCapContract('memory', () => ({
  budget: async (history) => new MemoryTokenBudget(history),
  loseEverything: async () => {},
}));

let redis: RedisServer;
const clients: RedisClient[] = [];
beforeAll(async () => {
  redis = await startRedis();
});
afterAll(async () => {
  for (const c of clients) c.disconnect();
  await redis?.stop();
});

runCostCapContract('redis', () => ({
  async budget(history) {
    const client = createRedis(redis.url);
    clients.push(client);
    await waitForReady(client, 15_000);
    return new RedisTokenBudget(client, history);
  },
  async loseEverything() {
    await redis.restart();
  },
}));
