// A member's charged tokens per model per budget day, as the web dashboard charts them.
import { shiftDay } from '../domain/budget-day.js';
import type { Services } from '../services.js';

export interface UsageByModel {
  /** Oldest first, today last; every day of the window, with or without requests. */
  days: string[];
  /** Most tokens first; `tokens[i]` is the day `days[i]`. */
  models: Array<{ model: string; tokens: number[]; total: number }>;
}

export async function usageByModel(
  deps: Pick<Services, 'store' | 'limits'>,
  discordId: string,
  now: Date,
  dayCount = 30,
): Promise<UsageByModel> {
  const { day: today } = deps.limits.calendar.at(now);
  const from = shiftDay(today, 1 - dayCount);
  const days = Array.from({ length: dayCount }, (_, i) => shiftDay(from, i));
  const index = new Map(days.map((d, i) => [d, i]));
  const byModel = new Map<string, number[]>();
  for (const r of await deps.store.dailyUsage({ discordId, fromDay: from, toDay: today })) {
    const i = index.get(r.day);
    if (i === undefined) continue;
    let tokens = byModel.get(r.model);
    if (!tokens) {
      tokens = new Array<number>(dayCount).fill(0);
      byModel.set(r.model, tokens);
    }
    tokens[i]! += r.chargedTokens;
  }
  const models = [...byModel].map(([model, tokens]) => ({ model, tokens, total: tokens.reduce((a, b) => a + b, 0) }));
  models.sort((a, b) => b.total - a.total || a.model.localeCompare(b.model));
  return { days, models };
}
