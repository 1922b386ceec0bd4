import type { Command } from 'commander';
import { findLiveKey } from '../../app/keys.js';
import { deleteUser, exportUserData } from '../../app/users.js';
import { budgetDay, shiftDay } from '../../domain/budget-day.js';
import { output, Refused, table, UsageError, withServices } from '../context.js';

export function registerUserCommands(program: Command): void {
  const users = program.command('users').description('look up, export and delete user data');

  users
    .command('show <discordId>')
    .description("a user's live key and the last 7 days of usage")
    .action(async (discordId: string, _opts, cmd: Command) => {
      await withServices(async (s) => {
        const user = await s.store.getUser(discordId);
        if (!user) throw new Refused(`No stored data for Discord user ${discordId}.`);
        const today = budgetDay(s.now(), s.config.limits.budgetTimeZone);
        const [key, daily] = await Promise.all([
          findLiveKey(s, discordId),
          s.store.dailyUsage({ discordId, fromDay: shiftDay(today, -6), toDay: today }),
        ]);
        const liveKey = key && { id: key.id, prefix: key.prefix, tier: key.tier, status: key.status };
        output(
          cmd,
          { user, key: liveKey, daily },
          [
            `Discord user ${discordId}, known since ${user.createdAt.toISOString()}${user.bannedAt ? `, BANNED: ${user.banReason}` : ''}`,
            liveKey ? table([liveKey]) : 'No live key.',
            '',
            table(daily.map(({ discordId: _d, ...d }) => d)),
          ].join('\n'),
        );
      });
    });

  users
    .command('export <discordId>')
    .description('print everything stored about a user as JSON')
    .action(async (discordId: string) => {
      await withServices(async (s) => {
        const data = await exportUserData(s, discordId);
        if (!data) throw new Refused(`No stored data for Discord user ${discordId}.`);
        process.stdout.write(`${JSON.stringify(data, null, 2)}\n`);
      });
    });

  users
    .command('delete <discordId>')
    .description('delete a user, their keys and usage records')
    .option('--yes', 'confirm the deletion')
    .action(async (discordId: string, opts, cmd: Command) => {
      if (!opts.yes) throw new UsageError('Deleting is permanent: add --yes to confirm.');
      await withServices(async (s) => {
        const r = await deleteUser(s, { discordId, actor: 'cli' });
        if (!r.ok) throw new Refused(r.message);
        output(cmd, r, `Deleted Discord user ${discordId}: ${r.keys} keys, ${r.usageRecords} usage records.`);
      });
    });
}
