// Who may moderate. Checked in every handler: `default_member_permissions` only hides commands, and
// a server admin can grant them to anyone in Integrations settings.
import type { DiscordConfig } from '../../src/config/schema.js';
import { type Invoker, UserError } from '../types.js';

const ADMINISTRATOR = 0x8n;
const MANAGE_GUILD = 0x20n;

function isModerator(config: DiscordConfig, invoker: Invoker): boolean {
  // Permissions in another server say nothing about this one.
  if (invoker.guildId !== config.guildId) return false;
  if (((invoker.permissions ?? 0n) & (ADMINISTRATOR | MANAGE_GUILD)) !== 0n) return true;
  return invoker.roleIds.some((r) => config.moderatorRoleIds.includes(r));
}

export function requireModerator(config: DiscordConfig, invoker: Invoker): void {
  if (!isModerator(config, invoker)) {
    throw new UserError('You need Manage Server or a moderator role in this server to use moderator commands.');
  }
}
