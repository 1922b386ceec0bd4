// One behaviour for every limits backend: each adapter set must pass this suite unchanged.
import { randomUUID } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import type { BudgetHistory } from '../../src/adapters/memory/limits.js';
import type { ChargeableTokenBudget, ConcurrencyLimiter, KeyEvents, RateLimiter } from '../../src/domain/ports.js';

export interface LimitsUnderTest {
  rate: RateLimiter;
  concurrency: ConcurrencyLimiter;
  budget: ChargeableTokenBudget;
  events: KeyEvents;
  cleanup(): Promise<void>;
}

const unique = (label: string) => `${label}-${randomUUID().slice(0, 8)}`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * `make` is called more than once: the events cases treat two results as two replicas. `history`
 * is the store's account of a day, for a limiter that has to rebuild one.
 */
export function runLimitsContract(
  name: string,
  make: (opts?: { history?: BudgetHistory }) => Promise<LimitsUnderTest>,
): void {
  describe(`limits contract: ${name}`, () => {
    const made: LimitsUnderTest[] = [];
    const build = async (opts?: { history?: BudgetHistory }) => {
      const l = await make(opts);
      made.push(l);
      return l;
    };
    let shared: LimitsUnderTest | undefined;
    const limits = async () => {
      shared ??= await build();
      return shared;
    };
    afterAll(async () => {
      for (const l of made) await l.cleanup();
    });

    describe('rate limiter', () => {
      it('allows exactly perMinute requests in a window, then refuses until it resets', async () => {
        const { rate } = await limits();
        const subject = unique('rpm');
        const remaining: number[] = [];
        for (let i = 0; i < 5; i++) {
          const d = await rate.consume(subject, 5);
          expect(d.allowed).toBe(true);
          expect(d.limit).toBe(5);
          remaining.push(d.remaining);
        }
        expect(remaining).toEqual([4, 3, 2, 1, 0]);
        const refused = await rate.consume(subject, 5);
        expect(refused).toMatchObject({ allowed: false, limit: 5, remaining: 0 });
        expect(refused.resetMs).toBeGreaterThan(0);
        expect(refused.resetMs).toBeLessThanOrEqual(60_000);
      });

      it('counts each subject on its own', async () => {
        const { rate } = await limits();
        const a = unique('rpm-a');
        const b = unique('rpm-b');
        expect((await rate.consume(a, 1)).allowed).toBe(true);
        expect((await rate.consume(a, 1)).allowed).toBe(false);
        expect((await rate.consume(b, 1)).allowed).toBe(true);
      });

      it('keeps separate counts for different limits of one subject', async () => {
        const { rate } = await limits();
        const subject = unique('rpm-tier');
        expect((await rate.consume(subject, 1)).allowed).toBe(true);
        const other = await rate.consume(subject, 3);
        expect(other).toMatchObject({ allowed: true, limit: 3, remaining: 2 });
      });
    });

    describe('concurrency limiter', () => {
      it('grants up to max leases, refuses beyond, and a release frees a slot', async () => {
        const { concurrency } = await limits();
        const subject = unique('conc');
        expect(await concurrency.acquire(subject, 'l1', 2, 30_000)).toEqual({ ok: true, active: 1 });
        expect(await concurrency.acquire(subject, 'l2', 2, 30_000)).toEqual({ ok: true, active: 2 });
        expect(await concurrency.acquire(subject, 'l3', 2, 30_000)).toEqual({ ok: false, active: 2 });
        await concurrency.release(subject, 'l1');
        expect(await concurrency.acquire(subject, 'l3', 2, 30_000)).toEqual({ ok: true, active: 2 });
      });

      it('re-acquiring a held lease does not take another slot', async () => {
        const { concurrency } = await limits();
        const subject = unique('conc-again');
        expect(await concurrency.acquire(subject, 'l1', 1, 30_000)).toEqual({ ok: true, active: 1 });
        expect(await concurrency.acquire(subject, 'l1', 1, 30_000)).toEqual({ ok: true, active: 1 });
      });

      it('releasing an unknown lease changes nothing', async () => {
        const { concurrency } = await limits();
        const subject = unique('conc-unknown');
        await concurrency.release(subject, 'never-acquired');
        expect(await concurrency.acquire(subject, 'l1', 1, 30_000)).toEqual({ ok: true, active: 1 });
        await concurrency.release(subject, 'never-acquired');
        expect(await concurrency.acquire(subject, 'l2', 1, 30_000)).toEqual({ ok: false, active: 1 });
      });

      it('an expired lease frees its slot without a release', async () => {
        const { concurrency } = await limits();
        const subject = unique('conc-ttl');
        expect((await concurrency.acquire(subject, 'crashed', 1, 200)).ok).toBe(true);
        expect((await concurrency.acquire(subject, 'next', 1, 30_000)).ok).toBe(false);
        // Bounded poll rather than a fixed sleep: the slot must free up, however slow the machine.
        let freed = false;
        for (let i = 0; i < 100 && !freed; i++) {
          await sleep(50);
          freed = (await concurrency.acquire(subject, 'next', 1, 30_000)).ok;
        }
        expect(freed).toBe(true);
      });
    });

    describe('token budget', () => {
      const day = '2030-01-15';
      const reserveArgs = (subject: string, requestId: string, min: number, max: number, limit = 1000) => ({
        subject,
        day,
        requestId,
        min,
        max,
        limit,
      });

      it('grants max when it fits', async () => {
        const { budget } = await limits();
        const subject = unique('budget');
        expect(await budget.reserve(reserveArgs(subject, 'r1', 10, 100))).toEqual({
          ok: true,
          granted: 100,
          used: 100,
          limit: 1000,
        });
        expect(await budget.used(subject, day)).toBe(100);
      });

      it('grants what is left when that is at least min', async () => {
        const { budget } = await limits();
        const subject = unique('budget-partial');
        await budget.reserve(reserveArgs(subject, 'r1', 950, 950));
        expect(await budget.reserve(reserveArgs(subject, 'r2', 10, 100))).toEqual({
          ok: true,
          granted: 50,
          used: 1000,
          limit: 1000,
        });
      });

      it('refuses when less than min fits, and takes nothing', async () => {
        const { budget } = await limits();
        const subject = unique('budget-refuse');
        await budget.reserve(reserveArgs(subject, 'r1', 995, 995));
        expect(await budget.reserve(reserveArgs(subject, 'r2', 10, 100))).toEqual({
          ok: false,
          granted: 0,
          used: 995,
          limit: 1000,
        });
        expect(await budget.used(subject, day)).toBe(995);
      });

      it('refuses a spent budget even when min is 0', async () => {
        const { budget } = await limits();
        const subject = unique('budget-spent');
        await budget.reserve(reserveArgs(subject, 'r1', 1000, 1000));
        expect(await budget.reserve(reserveArgs(subject, 'r2', 0, 100))).toMatchObject({ ok: false, granted: 0 });
      });

      it('settle replaces the reservation by the actual amount', async () => {
        const { budget } = await limits();
        const subject = unique('budget-settle');
        await budget.reserve(reserveArgs(subject, 'r1', 10, 100));
        expect(await budget.settle({ subject, day, requestId: 'r1', actual: 40 })).toEqual({ used: 40 });
        expect(await budget.used(subject, day)).toBe(40);
      });

      it('a second settle of the same request changes nothing', async () => {
        const { budget } = await limits();
        const subject = unique('budget-twice');
        await budget.reserve(reserveArgs(subject, 'r1', 10, 100));
        await budget.settle({ subject, day, requestId: 'r1', actual: 40 });
        expect(await budget.settle({ subject, day, requestId: 'r1', actual: 40 })).toEqual({ used: 40 });
        expect(await budget.settle({ subject, day, requestId: 'r1', actual: 70 })).toEqual({ used: 40 });
        expect(await budget.used(subject, day)).toBe(40);
      });

      it('a settle repeated after many other settles of the day still changes nothing', async () => {
        const { budget } = await limits();
        const subject = unique('budget-many');
        const limit = 1_000_000;
        await budget.reserve(reserveArgs(subject, 'first', 10, 100, limit));
        await budget.settle({ subject, day, requestId: 'first', actual: 40 });
        const others = 300;
        await Promise.all(
          Array.from({ length: others }, async (_, i) => {
            await budget.reserve(reserveArgs(subject, `r${i}`, 1, 10, limit));
            await budget.settle({ subject, day, requestId: `r${i}`, actual: 3 });
          }),
        );
        const used = 40 + others * 3;
        expect(await budget.settle({ subject, day, requestId: 'first', actual: 99 })).toEqual({ used });
        expect(await budget.settle({ subject, day, requestId: `r${others - 1}`, actual: 99 })).toEqual({ used });
        expect(await budget.used(subject, day)).toBe(used);
      });

      it('a settle repeated seconds later still changes nothing', async () => {
        const { budget } = await limits();
        const subject = unique('budget-late');
        await budget.reserve(reserveArgs(subject, 'r1', 10, 100));
        await budget.settle({ subject, day, requestId: 'r1', actual: 40 });
        await sleep(1_500);
        expect(await budget.settle({ subject, day, requestId: 'r1', actual: 90 })).toEqual({ used: 40 });
        expect(await budget.used(subject, day)).toBe(40);
      });

      it('settling a reservation that is not held changes nothing', async () => {
        const { budget } = await limits();
        const subject = unique('budget-unknown');
        await budget.reserve(reserveArgs(subject, 'held', 10, 30));
        expect(await budget.settle({ subject, day, requestId: 'never-reserved', actual: 25 })).toEqual({ used: 30 });
        // The same request id under another subject or day is another request.
        await budget.settle({ subject: unique('budget-other'), day, requestId: 'held', actual: 5 });
        await budget.settle({ subject, day: '2030-01-16', requestId: 'held', actual: 5 });
        expect(await budget.used(subject, day)).toBe(30);
        expect(await budget.used(subject, '2030-01-16')).toBe(0);
      });

      it("a limiter without today's ledger rebuilds it from history before admitting", async () => {
        const asked: Array<[string, string]> = [];
        const subject = unique('budget-rebuilt');
        const today = new Date().toISOString().slice(0, 10);
        const history: BudgetHistory = async (s, d) => {
          asked.push([s, d]);
          return s === subject && d === today ? 700 : 0;
        };
        // A limiter starting now, as after a restart: today may have begun before it.
        const { budget } = await build({ history });
        const args = { subject, day: today, limit: 1000 };
        expect(await budget.reserve({ ...args, requestId: 'big', min: 400, max: 400 })).toMatchObject({
          ok: false,
          used: 700,
        });
        expect(await budget.reserve({ ...args, requestId: 'fits', min: 100, max: 500 })).toEqual({
          ok: true,
          granted: 300,
          used: 1000,
          limit: 1000,
        });
        // Once per subject and day, however many requests follow.
        expect(asked).toEqual([[subject, today]]);
        // A day that begins after the limiter's state does cannot have been lost: no lookup.
        await budget.reserve({ ...args, day: '2030-02-01', requestId: 'later', min: 1, max: 1 });
        expect(asked).toHaveLength(1);
      });

      it('concurrent first requests of a day share one rebuild', async () => {
        let calls = 0;
        const history: BudgetHistory = async () => {
          calls++;
          await sleep(50);
          return 900;
        };
        const { budget } = await build({ history });
        const subject = unique('budget-rebuild-race');
        const day = new Date().toISOString().slice(0, 10);
        const results = await Promise.all(
          Array.from({ length: 10 }, (_, i) =>
            budget.reserve({ subject, day, requestId: `r${i}`, min: 30, max: 30, limit: 1000 }),
          ),
        );
        expect(results.filter((r) => r.ok)).toHaveLength(3);
        expect(await budget.used(subject, day)).toBe(990);
        expect(calls).toBeGreaterThanOrEqual(1);
      });

      it('charge adds spend made elsewhere once per request, past the limit if need be', async () => {
        const { budget } = await limits();
        const subject = unique('budget-charge');
        const at = Date.now();
        await budget.reserve(reserveArgs(subject, 'held', 10, 100));
        expect(await budget.charge({ subject, day, requestId: 'away-1', actual: 950, at })).toEqual({ used: 1050 });
        // Retried (a replay sent again): nothing more.
        expect(await budget.charge({ subject, day, requestId: 'away-1', actual: 950, at })).toEqual({ used: 1050 });
        // The reservation held is untouched and settles as usual; the day is spent for new requests.
        expect(await budget.settle({ subject, day, requestId: 'held', actual: 20 })).toEqual({ used: 970 });
        expect(await budget.reserve(reserveArgs(subject, 'next', 40, 40))).toMatchObject({ ok: false, used: 970 });
        // Per subject and day: the same request id elsewhere is another charge.
        expect(await budget.charge({ subject, day: '2030-01-16', requestId: 'away-1', actual: 5, at })).toEqual({
          used: 5,
        });
        await expect(budget.charge({ subject, day, requestId: 'bad', actual: -1, at })).rejects.toThrow(RangeError);
      });

      it('a ledger rebuilt from history after a charge was spent does not add it again', async () => {
        const subject = unique('budget-charge-rebuilt');
        const today = new Date().toISOString().slice(0, 10);
        // The usage records hold 700, the charged request's 200 included.
        const { budget } = await build({ history: async (s) => (s === subject ? 700 : 0) });
        const spentAt = Date.now() - 1_000;
        expect(await budget.charge({ subject, day: today, requestId: 'before', actual: 200, at: spentAt })).toEqual({
          used: 700,
        });
        // Spent after the rebuild: not in what it read.
        expect(
          await budget.charge({ subject, day: today, requestId: 'after', actual: 50, at: Date.now() + 1 }),
        ).toEqual({
          used: 750,
        });
        // A day that did not begin before the limiter's state was never lost: counted from zero.
        expect(
          await budget.charge({ subject, day: '2030-02-01', requestId: 'later', actual: 30, at: spentAt }),
        ).toEqual({ used: 30 });
      });

      it('reserving again under the same requestId returns the first grant', async () => {
        const { budget } = await limits();
        const subject = unique('budget-retry');
        await budget.reserve(reserveArgs(subject, 'r1', 10, 100));
        expect(await budget.reserve(reserveArgs(subject, 'r1', 10, 100))).toEqual({
          ok: true,
          granted: 100,
          used: 100,
          limit: 1000,
        });
      });

      it('50 concurrent reservations never take the total past the limit', async () => {
        const { budget } = await limits();
        const subject = unique('budget-race');
        const results = await Promise.all(
          Array.from({ length: 50 }, (_, i) => budget.reserve(reserveArgs(subject, `r${i}`, 10, 30))),
        );
        const granted = results.reduce((sum, r) => sum + r.granted, 0);
        // 33 × 30 = 990, then one grant of the last 10 (= min), the other 16 refused.
        expect(granted).toBe(1000);
        expect(results.filter((r) => r.ok)).toHaveLength(34);
        expect(results.filter((r) => !r.ok).every((r) => r.granted === 0)).toBe(true);
        expect(await budget.used(subject, day)).toBe(1000);
      });

      it('each day has its own budget', async () => {
        const { budget } = await limits();
        const subject = unique('budget-days');
        await budget.reserve(reserveArgs(subject, 'r1', 1000, 1000));
        const nextDay = await budget.reserve({ ...reserveArgs(subject, 'r2', 10, 100), day: '2030-01-16' });
        expect(nextDay).toEqual({ ok: true, granted: 100, used: 100, limit: 1000 });
        expect(await budget.used(subject, day)).toBe(1000);
        expect(await budget.used(subject, '2030-01-16')).toBe(100);
      });

      it('rejects malformed arguments as caller errors', async () => {
        const { budget } = await limits();
        const subject = unique('budget-bad');
        await expect(budget.reserve({ ...reserveArgs(subject, 'r1', 1, 10), day: '15/01/2030' })).rejects.toThrow(
          RangeError,
        );
        await expect(budget.settle({ subject, day, requestId: 'r1', actual: 1.5 })).rejects.toThrow(RangeError);
      });
    });

    describe('key events', () => {
      it('a publish on one replica reaches subscribers on every replica', async () => {
        const publisher = await build();
        const listener = await build();
        const hash = `hash-${randomUUID()}`;
        const heard = (events: KeyEvents) =>
          new Promise<string>((resolve) => {
            void events.subscribe((h) => {
              if (h === hash) resolve(h);
            });
          });
        const onListener = heard(listener.events);
        const onPublisher = heard(publisher.events);
        // Subscriptions are confirmed before subscribe() resolves; wait for both before publishing.
        await listener.events.subscribe(() => {});
        await publisher.events.subscribe(() => {});
        await publisher.events.publish(hash);
        expect(await onListener).toBe(hash);
        expect(await onPublisher).toBe(hash);
      });

      it('a closed instance hears nothing more', async () => {
        const publisher = await build();
        const closed = await build();
        const heard: string[] = [];
        await closed.events.subscribe((h) => heard.push(h));
        await closed.events.close();
        // A live subscriber on the publisher side tells us when the event has gone round.
        const delivered = new Promise<void>((resolve) => {
          void publisher.events.subscribe(() => resolve());
        });
        await publisher.events.subscribe(() => {});
        await publisher.events.publish('after-close');
        await delivered;
        expect(heard).toEqual([]);
      });
    });
  });
}
