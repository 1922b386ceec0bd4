// /privacy export|delete: a member's own data, as a file or gone.
import type { RESTPostAPIApplicationCommandsJSONBody } from 'discord-api-types/v10';
import { deleteUser, exportUserData, selfDeletionHold } from '../../src/app/users.js';
import { type BotDeps, type Invoker, type Reply, UserError } from '../types.js';
import { COMMAND, GUILD_ONLY, num, OPTION } from './shared.js';

export const DELETE_CONFIRM = 'privacy-delete-confirm';
/** Below Discord's smallest upload limit for bots. */
const MAX_FILE_BYTES = 8 * 1024 * 1024;

export const data: RESTPostAPIApplicationCommandsJSONBody = {
  type: COMMAND.slash,
  name: 'privacy',
  description: 'What the relay stores about you',
  contexts: GUILD_ONLY,
  options: [
    { type: OPTION.subcommand, name: 'export', description: 'Download everything stored about you (JSON)' },
    { type: OPTION.subcommand, name: 'delete', description: 'Delete everything stored about you' },
  ],
};

export async function privacyExport(deps: BotDeps, invoker: Invoker): Promise<Reply> {
  const exported = await exportUserData(deps.services, invoker.userId);
  if (!exported) return { kind: 'text', content: 'Guildgate stores nothing about you.' };
  const data = Buffer.from(`${JSON.stringify(exported, null, 2)}\n`);
  if (data.length > MAX_FILE_BYTES) {
    throw new UserError('Your export is too large to attach here. Ask the relay operator for it.');
  }
  return {
    kind: 'file',
    content: `Everything Guildgate stores about you: your user record, ${exported.keys.length} key records (no secrets) and ${num(exported.usage.length)} request records (metadata only, never prompts or completions).`,
    file: { name: `guildgate-export-${invoker.userId}.json`, data },
  };
}

async function refuseWhileModerated(deps: BotDeps, discordId: string): Promise<void> {
  const hold = await selfDeletionHold(deps.services, discordId);
  if (hold) throw new UserError(hold);
}

export async function privacyDelete(deps: BotDeps, invoker: Invoker): Promise<Reply> {
  await refuseWhileModerated(deps, invoker.userId);
  return {
    kind: 'confirm',
    customId: DELETE_CONFIRM,
    label: 'Delete my data',
    content: [
      'This permanently deletes everything Guildgate stores about you:',
      '- your user record,',
      '- all your keys (a live key stops working at once),',
      '- your usage history (request records and daily totals).',
      "The audit log keeps entries naming your Discord id (who issued or changed what, when). Today's token budget is not refilled.",
      'This cannot be undone.',
    ].join('\n'),
  };
}

/** The confirm button of `/privacy delete`. */
export async function privacyDeleteConfirm(deps: BotDeps, invoker: Invoker): Promise<Reply> {
  // Checked again: the state may have changed since the question was shown.
  await refuseWhileModerated(deps, invoker.userId);
  const r = await deleteUser(deps.services, { discordId: invoker.userId, actor: `discord:${invoker.userId}` });
  if (!r.ok) return { kind: 'text', content: 'Guildgate stores nothing about you; there is nothing to delete.' };
  return {
    kind: 'text',
    content: `Deleted: your user record, ${r.keys} keys and ${num(r.usageRecords)} usage records. Use \`/key create\` if you want a key again.`,
  };
}
