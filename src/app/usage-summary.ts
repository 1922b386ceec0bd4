// A member's budget today and their recent usage, as the bot and the web dashboard show it.
import type { TierConfig } from '../config/schema.js';
import { shiftDay } from '../domain/budget-day.js';
import type { Services } from '../services.js';
import { budgetSubject } from './admission.js';
import { findLiveKey } from './keys.js';

export type UsageDeps = Pick<Services, 'store' | 'limits' | 'config'>;

export interface UsageSummary {
  day: string;
  tier: string;
  /** Tokens used plus reserved today, as the relay counts them when admitting requests. */
  used: number;
  budget: number;
  resetAt: Date;
  rpm: number;
  /** Oldest first, today last; days without requests included as zeros. */
  last7Days: Array<{ day: string; requests: number; chargedTokens: number }>;
}

/** The tier a user's limits come from: their live key's, else the default a new key would get. */
export function tierOf(
  config: UsageDeps['config'],
  keyTier: string | null | undefined,
): { name: string; tier: TierConfig } {
  const name = keyTier && Object.hasOwn(config.tiers, keyTier) ? keyTier : config.defaultTier;
  return { name, tier: config.tiers[name]! };
}

export async function usageSummary(deps: UsageDeps, discordId: string, now: Date): Promise<UsageSummary> {
  const { day, resetAt } = deps.limits.calendar.at(now);
  const from = shiftDay(day, -6);
  const [key, used, rows] = await Promise.all([
    findLiveKey(deps, discordId),
    deps.limits.budget.used(budgetSubject(discordId), day),
    deps.store.dailyUsage({ discordId, fromDay: from, toDay: day }),
  ]);
  const { name, tier } = tierOf(deps.config, key?.tier);
  const last7Days = Array.from({ length: 7 }, (_, i) => ({ day: shiftDay(from, i), requests: 0, chargedTokens: 0 }));
  for (const r of rows) {
    const d = last7Days.find((x) => x.day === r.day);
    if (!d) continue;
    d.requests += r.requests;
    d.chargedTokens += r.chargedTokens;
  }
  return { day, tier: name, used, budget: tier.tokensPerDay, resetAt: new Date(resetAt), rpm: tier.rpm, last7Days };
}
