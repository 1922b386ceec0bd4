// `guildgate cost`: today's spend against each cost cap ledger, each tier's share and which tiers
// the relay is refusing right now.
import type { Command } from 'commander';
import { formatReset } from '../../app/admission.js';
import { inUnit, planCostCap, spendFromUsage } from '../../app/cost-cap.js';
import { BudgetCalendar } from '../../domain/budget-day.js';
import { type CapLedger, capLimit } from '../../domain/cost-cap.js';
import { output, table, withServices } from '../context.js';

function amount(ledger: CapLedger, units: number, currency: string): string {
  // Whole millionths at most: small spends stay visible (0.0026 USD rather than 0.00).
  return ledger.unit === 'tokens' ? String(units) : `${Number(inUnit(ledger, units).toFixed(6))} ${currency}`;
}

export function registerCostCommand(program: Command): void {
  program
    .command('cost')
    .description("today's spend against the operator cost cap, each tier's share and which tiers are shed")
    .action(async (_opts, cmd: Command) => {
      await withServices(async (s) => {
        const now = s.now();
        const { day, resetAt } = new BudgetCalendar(s.config.limits.budgetTimeZone).at(now);
        const plan = planCostCap(s.config);
        if (!plan) {
          output(cmd, { day, ledgers: [], tiers: [] }, 'No cost cap configured (see costCap in the config).');
          return;
        }
        const recorded = spendFromUsage(plan, await s.store.modelTotals(day));
        // Redis ledgers are shared by every replica and include requests in flight; an in-process
        // limiter belongs to the relay process, so this process can only read the records.
        const live =
          s.backends.limits === 'redis'
            ? await Promise.all(plan.ledgers.map((l) => s.limits.budget.used(l.subject, day)))
            : null;
        const ledgers = plan.ledgers.map((l, i) => {
          const rec = recorded.get(l.subject) ?? 0;
          const spent = Math.max(rec, live?.[i] ?? 0);
          return { ledger: l, spent, recorded: rec, live: live?.[i] ?? null };
        });
        const tiers = Object.entries(s.config.tiers).map(([tier, t]) => ({
          tier,
          capShare: t.capShare ?? 1,
          shedOn: ledgers
            .filter(({ ledger, spent }) => spent >= capLimit(ledger, t.capShare))
            .map(({ ledger }) => `${ledger.scope} ${ledger.unit}`),
        }));
        const data = {
          day,
          resetsAt: new Date(resetAt).toISOString(),
          currency: plan.currency,
          source: live ? 'redis ledgers and usage records' : 'usage records',
          ledgers: ledgers.map(({ ledger, spent, recorded, live }) => ({
            scope: ledger.scope,
            unit: ledger.unit,
            cap: inUnit(ledger, ledger.perDay),
            spent: inUnit(ledger, spent),
            recorded: inUnit(ledger, recorded),
            live: live === null ? null : inUnit(ledger, live),
          })),
          tiers,
        };
        const rows = ledgers.map(({ ledger, spent }) => ({
          cap: `${ledger.scope} ${ledger.unit}`,
          spent: amount(ledger, spent, plan.currency),
          of: amount(ledger, ledger.perDay, plan.currency),
          used: `${((100 * spent) / ledger.perDay).toFixed(1)}%`,
        }));
        const tierRows = tiers.map((t) => ({
          tier: t.tier,
          share: t.capShare,
          refused: t.shedOn.length ? `on ${t.shedOn.join(', ')}` : '-',
        }));
        output(
          cmd,
          data,
          [
            `Cost cap on ${day} (resets in ${formatReset(resetAt - now.getTime())}, ${data.resetsAt}); spend from ${data.source}`,
            table(rows),
            '',
            table(tierRows),
          ].join('\n'),
        );
      });
    });
}
