import type { Command } from 'commander';
import { budgetDay } from '../../domain/budget-day.js';
import { output, parsePositiveInt, table, UsageError, withServices } from '../context.js';

function dayOption(value: string | undefined, today: string): string {
  if (value === undefined) return today;
  if (!/^\d{4}-\d{2}-\d{2}$/.test(value)) throw new UsageError(`--day must look like 2026-01-31, got "${value}"`);
  return value;
}

export function registerUsageCommands(program: Command): void {
  const usage = program.command('usage').description('token and request totals');

  usage
    .command('today')
    .description("today's totals per model (budget day in the configured time zone)")
    .option('--day <YYYY-MM-DD>', 'another day')
    .action(async (opts, cmd: Command) => {
      await withServices(async (s) => {
        const day = dayOption(opts.day, budgetDay(s.now(), s.config.limits.budgetTimeZone));
        // Summed and sorted by the database: a busy day has a row per user and model.
        const list = await s.store.modelTotals(day);
        output(cmd, { day, models: list }, `Usage on ${day}\n${table(list)}`);
      });
    });

  usage
    .command('top')
    .description('users with the most tokens charged')
    .option('--day <YYYY-MM-DD>', 'another day than today')
    .option('--limit <n>', 'how many', '10')
    .action(async (opts, cmd: Command) => {
      const limit = parsePositiveInt(opts.limit, '--limit');
      await withServices(async (s) => {
        const day = dayOption(opts.day, budgetDay(s.now(), s.config.limits.budgetTimeZone));
        const top = await s.store.topUsers(day, limit);
        output(cmd, { day, users: top }, `Top users on ${day}\n${table(top)}`);
      });
    });
}
