// Operator cost cap in admission (src/app/admission.ts with src/app/cost-cap.ts) on the real
// in-process limit adapters, and its config validation.
import { describe, expect, it } from 'vitest';
import { MemoryConcurrencyLimiter, MemoryRateLimiter, MemoryTokenBudget } from '../../src/adapters/memory/limits.js';
import { type Admission, admit as admitRequest, type LimitDeps, settle } from '../../src/app/admission.js';
import { planCostCap } from '../../src/app/cost-cap.js';
import { buildConfig, ConfigError } from '../../src/config/load.js';
import type { TierConfig } from '../../src/config/schema.js';
import { BudgetCalendar } from '../../src/domain/budget-day.js';
import { RelayCapacityError } from '../../src/domain/cost-cap.js';
import { RateLimitError } from '../../src/domain/errors.js';
import type { TokenBudget } from '../../src/domain/ports.js';
import type { KeyRecord } from '../../src/domain/types.js';

const DAY = '2026-05-10';
const tier = (over: Partial<TierConfig> = {}): TierConfig => ({
  rpm: 1000,
  maxConcurrent: 10,
  tokensPerDay: 1_000_000,
  models: ['*'],
  maxTokens: 4096,
  ...over,
});
const TIERS = { free: tier({ capShare: 0.5 }), plus: tier({ capShare: 0.8 }), staff: tier() };

const MODELS = {
  cheap: {
    routes: [{ upstream: 'alpha', model: 'cheap' }],
    price: { inputPerMTokens: 1, outputPerMTokens: 4 },
  },
  premium: {
    routes: [
      { upstream: 'beta', model: 'premium' },
      { upstream: 'alpha', model: 'premium' },
    ],
    price: { inputPerMTokens: 10, outputPerMTokens: 40 },
  },
};

/** A full config through the real loader, so the plan is built from what operators write. */
function config(costCap: Record<string, unknown>) {
  return buildConfig(
    {
      upstreams: { alpha: { baseUrl: 'https://a.example/v1' }, beta: { baseUrl: 'https://b.example/v1' } },
      models: MODELS,
      tiers: TIERS,
      costCap,
    },
    {},
    'test',
  );
}

/** The budget port with every call counted, so tests can see what admission asked of it. */
function counting(inner: TokenBudget) {
  const calls = { reserve: [] as string[], settle: [] as string[] };
  const budget: TokenBudget = {
    reserve: (a) => {
      calls.reserve.push(a.subject);
      return inner.reserve(a);
    },
    settle: (a) => {
      calls.settle.push(a.subject);
      return inner.settle(a);
    },
    used: (s, d) => inner.used(s, d),
  };
  return { budget, calls };
}

function makeDeps(costCap: Record<string, unknown> | null, clock = { now: new Date(`${DAY}T12:00:00Z`) }) {
  const raw = new MemoryTokenBudget();
  const { budget, calls } = counting(raw);
  const deps: LimitDeps = {
    rate: new MemoryRateLimiter(),
    concurrency: new MemoryConcurrencyLimiter(),
    budget,
    calendar: new BudgetCalendar('UTC'),
    now: () => clock.now,
    leaseTtlMs: 60_000,
    costCap: costCap ? planCostCap(config(costCap)) : null,
  };
  return { deps, calls, ledger: raw, clock };
}

let seq = 0;
function key(tierName: keyof typeof TIERS): KeyRecord {
  seq++;
  return {
    id: `key_cap${seq}`,
    hash: `h${seq}`,
    prefix: 'gg_cap',
    discordId: `20000000000000000${seq}`,
    tier: tierName,
    status: 'active',
    statusReason: null,
    createdAt: new Date('2026-01-01T00:00:00Z'),
    expiresAt: null,
    revokedAt: null,
  };
}

async function admit(
  deps: LimitDeps,
  tierName: keyof typeof TIERS,
  req: { model?: string; prompt: number; maxTokens: number; completions?: number },
): Promise<Admission> {
  return admitRequest(
    deps,
    { requestId: `req_cap${++seq}`, key: key(tierName), tier: TIERS[tierName] },
    {
      model: req.model ?? 'unlisted',
      weight: 1,
      promptTokens: req.prompt,
      requestedMaxTokens: req.maxTokens,
      completions: req.completions ?? 1,
    },
  );
}

async function capacityRefusal(p: Promise<unknown>): Promise<RelayCapacityError> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  if (err instanceof RelayCapacityError) return err;
  throw new Error(`expected a RelayCapacityError, got ${String(err)}`);
}

describe('cost cap: shed order', () => {
  it('refuses lower tiers first as the relay fills its cap; the top tier may use it all', async () => {
    const { deps, ledger } = makeDeps({ relay: { tokensPerDay: 1000 } });
    // 450 of 1000 spent: every tier is served.
    const a = await admit(deps, 'staff', { model: 'cheap', prompt: 400, maxTokens: 50 });
    await settle(deps, a, { promptTokens: 400, completionTokens: 50 });
    // free may fill 500: a request that needs at least 100 more no longer fits.
    const free = await capacityRefusal(admit(deps, 'free', { model: 'cheap', prompt: 99, maxTokens: 10 }));
    expect(free.status).toBe(503);
    expect(free.code).toBe('relay_capacity_reached');
    expect(free.type).toBe('service_unavailable');
    expect(free.headers['retry-after']).toBe(String(12 * 3600));
    expect(free.message).toBe(
      `The relay's daily capacity for the "free" tier is used up. It resets in 12h0m0s (2026-05-11T00:00:00.000Z).`,
    );
    // plus (0.8 → 800) is still served, then shed too.
    const plus = await admit(deps, 'plus', { model: 'cheap', prompt: 300, maxTokens: 50 });
    await settle(deps, plus, { promptTokens: 300, completionTokens: 50 });
    expect(await ledger.used('cap:tokens:relay', DAY)).toBe(800);
    await capacityRefusal(admit(deps, 'plus', { model: 'cheap', prompt: 10, maxTokens: 10 }));
    // staff still gets the last 200.
    const staff = await admit(deps, 'staff', { model: 'cheap', prompt: 150, maxTokens: 100 });
    expect(staff.maxCompletionTokens).toBe(50);
  });

  it('a refusal by the cap gives back the member budget it had reserved, and the reverse', async () => {
    const { deps, ledger } = makeDeps({ relay: { tokensPerDay: 100 } });
    const k = key('free');
    await capacityRefusal(
      admitRequest(
        deps,
        { requestId: 'req_cap_undo', key: k, tier: TIERS.free },
        { model: 'cheap', weight: 1, promptTokens: 60, requestedMaxTokens: 1, completions: 1 },
      ),
    );
    expect(await ledger.used(`user:${k.discordId}`, DAY)).toBe(0);
    expect(await ledger.used('cap:tokens:relay', DAY)).toBe(0);

    const poor = { ...TIERS.staff, tokensPerDay: 10 };
    const err = await admitRequest(
      deps,
      { requestId: 'req_cap_undo2', key: key('staff'), tier: poor },
      {
        model: 'cheap',
        weight: 1,
        promptTokens: 20,
        requestedMaxTokens: 1,
        completions: 1,
      },
    ).catch((e: unknown) => e);
    // The member's own limit is named first: it is the one they can act on.
    expect(err).toBeInstanceOf(RateLimitError);
    expect(await ledger.used('cap:tokens:relay', DAY)).toBe(0);
  });

  it('a new budget day serves the shed tier again', async () => {
    const { deps, clock } = makeDeps({ relay: { tokensPerDay: 100 } });
    const a = await admit(deps, 'staff', { model: 'cheap', prompt: 90, maxTokens: 10 });
    await settle(deps, a, { promptTokens: 90, completionTokens: 10 });
    await capacityRefusal(admit(deps, 'free', { model: 'cheap', prompt: 1, maxTokens: 1 }));
    clock.now = new Date('2026-05-11T00:00:01Z');
    const next = await admit(deps, 'free', { model: 'cheap', prompt: 1, maxTokens: 1 });
    expect(next.day).toBe('2026-05-11');
  });
});

describe('cost cap: reserve and settle', () => {
  it('reservations are upper bounds and settle to the actual use on every ledger', async () => {
    const { deps, ledger } = makeDeps({ relay: { tokensPerDay: 10_000, currencyPerDay: 1 } });
    const adm = await admit(deps, 'staff', { model: 'premium', prompt: 100, maxTokens: 400 });
    // Reserved: 500 tokens; 100 × 10 + 400 × 40 = 17,000 millionths of the currency.
    expect(await ledger.used('cap:tokens:relay', DAY)).toBe(500);
    expect(await ledger.used('cap:currency:relay', DAY)).toBe(17_000);
    await settle(deps, adm, { promptTokens: 90, completionTokens: 7 });
    expect(await ledger.used('cap:tokens:relay', DAY)).toBe(97);
    expect(await ledger.used('cap:currency:relay', DAY)).toBe(900 + 280);
    // Settling twice changes nothing.
    await settle(deps, adm, { promptTokens: 900, completionTokens: 900 });
    expect(await ledger.used('cap:tokens:relay', DAY)).toBe(97);
  });

  it('clamps max_tokens to what the currency cap has left for the tier', async () => {
    // 0.02 of the currency = 20,000 millionths; plus may fill 16,000.
    const { deps } = makeDeps({ relay: { currencyPerDay: 0.02 } });
    // 100 prompt tokens cost 1,000; 15,000 left buys 375 output tokens at 40 per token.
    const adm = await admit(deps, 'plus', { model: 'premium', prompt: 100, maxTokens: 4000 });
    expect(adm.maxCompletionTokens).toBe(375);
    // With n = 3 the same allowance is shared by the three completions.
    const { deps: d2 } = makeDeps({ relay: { currencyPerDay: 0.02 } });
    expect(
      (await admit(d2, 'plus', { model: 'premium', prompt: 100, maxTokens: 4000, completions: 3 })).maxCompletionTokens,
    ).toBe(125);
  });

  it("an upstream's cap counts the models whose primary route it is, and the refusal names the model", async () => {
    const { deps, ledger } = makeDeps({ upstreams: { beta: { tokensPerDay: 100 } } });
    const big = await admit(deps, 'staff', { model: 'premium', prompt: 95, maxTokens: 5 });
    await settle(deps, big, { promptTokens: 95, completionTokens: 5 });
    expect(await ledger.used('cap:tokens:upstream:beta', DAY)).toBe(100);
    const err = await capacityRefusal(admit(deps, 'staff', { model: 'premium', prompt: 1, maxTokens: 1 }));
    expect(err.message).toMatch(/^The relay's daily capacity for the "staff" tier on model "premium" is used up\./);
    // Another model, primary on another upstream, is not affected (premium's fallback route does not count).
    await expect(admit(deps, 'staff', { model: 'cheap', prompt: 500, maxTokens: 5 })).resolves.toBeDefined();
    expect(await ledger.used('cap:tokens:upstream:alpha', DAY)).toBe(0);
  });
});

describe('cost cap: what admission asks of the budget port', () => {
  it('without a cap: one reserve and one settle per request, as before', async () => {
    const { deps, calls } = makeDeps(null);
    const adm = await admit(deps, 'free', { model: 'cheap', prompt: 10, maxTokens: 10 });
    await settle(deps, adm, { promptTokens: 10, completionTokens: 1 });
    expect(calls.reserve).toHaveLength(1);
    expect(calls.settle).toHaveLength(1);
    expect(calls.reserve[0]).toMatch(/^user:/);
  });

  it('with caps: one reserve per ledger, all issued before the first answer (one round trip)', async () => {
    const { deps, calls } = makeDeps({ relay: { tokensPerDay: 10_000 }, upstreams: { beta: { currencyPerDay: 5 } } });
    const pending = admitRequest(
      deps,
      { requestId: 'req_cap_tick', key: key('staff'), tier: TIERS.staff },
      {
        model: 'premium',
        weight: 1,
        promptTokens: 10,
        requestedMaxTokens: 10,
        completions: 1,
      },
    );
    // Synchronously, before anything was awaited: every reservation is already on its way.
    expect(calls.reserve).toEqual([expect.stringMatching(/^user:/), 'cap:tokens:relay', 'cap:currency:upstream:beta']);
    const adm = await pending;
    await settle(deps, adm, { promptTokens: 10, completionTokens: 2 });
    expect(calls.settle.slice(0, 3)).toEqual([
      expect.stringMatching(/^user:/),
      'cap:tokens:relay',
      'cap:currency:upstream:beta',
    ]);
    // A model the upstream's cap does not reach adds only the relay's ledger.
    calls.reserve.length = 0;
    await admit(deps, 'staff', { model: 'cheap', prompt: 10, maxTokens: 10 });
    expect(calls.reserve).toEqual([expect.stringMatching(/^user:/), 'cap:tokens:relay']);
  });
});

describe('cost cap: config', () => {
  function problems(fn: () => unknown): string[] {
    try {
      fn();
    } catch (err) {
      if (err instanceof ConfigError) return err.problems;
      throw err;
    }
    throw new Error('expected a ConfigError');
  }

  it('a currency cap needs the price of every model that can reach it, naming the field', () => {
    const unpriced = { routes: [{ upstream: 'beta', model: 'x' }] };
    const base = {
      upstreams: { alpha: { baseUrl: 'https://a.example/v1' }, beta: { baseUrl: 'https://b.example/v1' } },
      models: { ...MODELS, unpriced, other: { routes: [{ upstream: 'alpha', model: 'y' }] } },
    };
    expect(problems(() => buildConfig({ ...base, costCap: { relay: { currencyPerDay: 10 } } }, {}, 'x'))).toEqual([
      'models.unpriced.price: required: costCap.relay.currencyPerDay is set and this model counts against it',
      'models.other.price: required: costCap.relay.currencyPerDay is set and this model counts against it',
    ]);
    // An upstream's currency cap needs prices only for the models whose primary route it is.
    expect(
      problems(() => buildConfig({ ...base, costCap: { upstreams: { beta: { currencyPerDay: 1 } } } }, {}, 'x')),
    ).toEqual([
      'models.unpriced.price: required: costCap.upstreams.beta.currencyPerDay is set and this model counts against it',
    ]);
    // A token cap needs no prices.
    expect(buildConfig({ ...base, costCap: { relay: { tokensPerDay: 10 } } }, {}, 'x').costCap?.relay).toEqual({
      tokensPerDay: 10,
    });
  });

  it('names unknown upstreams, empty caps, bad shares and bad prices', () => {
    const found = problems(() =>
      buildConfig(
        {
          upstreams: { alpha: { baseUrl: 'https://a.example/v1' } },
          models: {
            m: { routes: [{ upstream: 'alpha', model: 'm' }], price: { inputPerMTokens: -1, outputPerMTokens: 1 } },
          },
          tiers: { free: { rpm: 1, tokensPerDay: 1, capShare: 1.5 } },
          costCap: { currency: 'dollars', relay: {}, upstreams: { gamma: { tokensPerDay: 5 } } },
        },
        {},
        'x',
      ),
    );
    const paths = found.map((p) => p.slice(0, p.indexOf(': ')));
    expect(paths).toEqual(
      expect.arrayContaining([
        'models.m.price.inputPerMTokens',
        'tiers.free.capShare',
        'costCap.currency',
        'costCap.relay',
        'costCap.upstreams.gamma',
      ]),
    );
    expect(found).toContain('costCap.upstreams.gamma: no upstream named "gamma"');
    expect(found).toContain('costCap.relay: set tokensPerDay and/or currencyPerDay');
  });

  it('no costCap section: no plan, so admission takes its uncapped path', () => {
    expect(planCostCap(buildConfig({}, {}, null))).toBeNull();
    const plan = planCostCap(config({ relay: { tokensPerDay: 5, currencyPerDay: 2 } }))!;
    expect(plan.ledgers.map((l) => [l.subject, l.perDay])).toEqual([
      ['cap:tokens:relay', 5],
      ['cap:currency:relay', 2_000_000],
    ]);
    // A model that is not configured counts against the relay's token cap only.
    expect(plan.ratesFor('not-configured').map((r) => r.ledger.subject)).toEqual(['cap:tokens:relay']);
    expect(plan.ratesFor('premium').map((r) => r.ledger.subject)).toEqual(['cap:tokens:relay', 'cap:currency:relay']);
  });
});
