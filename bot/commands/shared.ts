// Small pieces every command uses: option reading, Discord markdown, refusals.
import type {
  ApplicationCommandOptionType,
  ApplicationCommandType,
  InteractionContextType,
} from 'discord-api-types/v10';
import type { KeyFailure } from '../../src/app/keys.js';
import { isSnowflake } from '../../src/domain/ids.js';
import type { KeyRecord } from '../../src/domain/types.js';
import { type BotDeps, type Invoker, UserError } from '../types.js';

// Enum values spelled as literals: discord-api-types is only needed for its types here.
export const OPTION = { subcommand: 1, string: 3, user: 6 } as const satisfies Record<
  string,
  ApplicationCommandOptionType
>;
export const COMMAND = { slash: 1, user: 2 } as const satisfies Record<string, ApplicationCommandType>;
export const GUILD_ONLY: InteractionContextType[] = [0];
/** Manage Server, as the decimal string Discord expects for `default_member_permissions`. */
export const MANAGE_SERVER = '32';

/** Option values as the router extracts them from an interaction (user options as user ids). */
export type CommandOptions = Record<string, string | boolean | number | undefined>;

export function optionalString(opts: CommandOptions, name: string): string | null {
  const v = opts[name];
  if (v === undefined || v === null) return null;
  const s = String(v).trim();
  return s === '' ? null : s;
}

export function requiredString(opts: CommandOptions, name: string): string {
  const v = optionalString(opts, name);
  if (v === null) throw new UserError(`The option "${name}" is required.`);
  return v;
}

/** A Discord user id option; anything else would address nobody. */
export function userOption(opts: CommandOptions, name = 'user'): string {
  const v = requiredString(opts, name);
  if (!isSnowflake(v)) throw new UserError(`"${v}" is not a Discord user id.`);
  return v;
}

/** Refuses invocations outside the configured server: keys belong to its members only. */
export function requireServer(deps: BotDeps, invoker: Invoker, command: string): void {
  if (invoker.guildId === null) {
    throw new UserError(`Run \`${command}\` in a channel of the server, not in a direct message.`);
  }
  if (invoker.guildId !== deps.config.guildId) {
    throw new UserError(`This bot serves one server only; run \`${command}\` there.`);
  }
}

export const mention = (userId: string) => `<@${userId}>`;

/** A Discord timestamp every client shows in its own locale and time zone. */
export function when(at: Date | number, style: 'R' | 'f' | 'D' = 'R'): string {
  return `<t:${Math.floor(new Date(at).getTime() / 1000)}:${style}>`;
}

export const num = (n: number) => n.toLocaleString('en-US');

export function describeStatus(key: KeyRecord): string {
  return key.statusReason ? `${key.status} (${key.statusReason})` : key.status;
}

/** The refusal a member or moderator sees for a failed key use case. */
export function refusal(failure: KeyFailure): UserError {
  return new UserError(failure.message);
}

/** Discord refuses message content over 2000 characters. */
export function clip(text: string, max = 2000): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}
