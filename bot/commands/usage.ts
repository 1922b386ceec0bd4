// /usage: today's budget as the relay counts it, and the last seven days.
import type { RESTPostAPIApplicationCommandsJSONBody } from 'discord-api-types/v10';
import { type UsageSummary, usageSummary } from '../../src/app/usage-summary.js';
import type { BotDeps, Invoker, Reply } from '../types.js';
import { COMMAND, GUILD_ONLY, num, when } from './shared.js';

export const data: RESTPostAPIApplicationCommandsJSONBody = {
  type: COMMAND.slash,
  name: 'usage',
  description: "Today's token budget and your last 7 days",
  contexts: GUILD_ONLY,
};

export function percent(used: number, budget: number): string {
  return `${((100 * used) / budget).toFixed(1)}%`;
}

/** One line for today, shared with the moderator lookup. */
export function todayLine(s: UsageSummary): string {
  return `${num(s.used)} / ${num(s.budget)} tokens (${percent(s.used, s.budget)}), resets ${when(s.resetAt)}`;
}

export async function usage(deps: BotDeps, invoker: Invoker): Promise<Reply> {
  const s = await usageSummary(deps.services, invoker.userId, deps.services.now());
  const days = [...s.last7Days]
    .reverse()
    .map((d) => `\`${d.day}\` ${num(d.requests)} requests, ${num(d.chargedTokens)} tokens`);
  return {
    kind: 'text',
    content: [
      `**Today:** ${todayLine(s)}`,
      `Tier **${s.tier}**: ${num(s.rpm)} requests/min`,
      '**Last 7 days** (recorded requests; the newest may take a moment to appear)',
      ...days,
    ].join('\n'),
  };
}
