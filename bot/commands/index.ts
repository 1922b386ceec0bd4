// The command registry the router dispatches through: definitions to register, handlers by command
// path, and button handlers by custom id.
import type { RESTPostAPIApplicationCommandsJSONBody } from 'discord-api-types/v10';
import type { BotDeps, Invoker, Reply } from '../types.js';
import * as key from './key.js';
import * as mod from './mod.js';
import * as models from './models.js';
import { requireModerator } from './permissions.js';
import * as privacy from './privacy.js';
import { type CommandOptions, optionalString, requiredString, userOption } from './shared.js';
import * as usage from './usage.js';

export type { CommandOptions } from './shared.js';

/** `opts`: option values by name; user options (and a context menu's target, as `user`) are user ids. */
export type CommandHandler = (deps: BotDeps, invoker: Invoker, opts: CommandOptions) => Promise<Reply>;
export type ComponentHandler = (deps: BotDeps, invoker: Invoker) => Promise<Reply>;

/** Every command to register with Discord; `tierNames` become the choices of `/mod tier`. */
export function commandDefinitions(tierNames: readonly string[]): RESTPostAPIApplicationCommandsJSONBody[] {
  return [key.data, usage.data, models.data, privacy.data, ...mod.modCommandData(tierNames)];
}

/** The path of an interaction: `name`, or `name subcommand` (context menus: their name). */
export function commandPath(name: string, subcommand?: string | null): string {
  return subcommand ? `${name} ${subcommand}` : name;
}

// Rights are checked before options are even read; the handlers check again on their own.
const moderator =
  (fn: CommandHandler): CommandHandler =>
  async (d, i, o) => {
    requireModerator(d.config, i);
    return fn(d, i, o);
  };

const target = (opts: CommandOptions) => ({ user: userOption(opts), reason: optionalString(opts, 'reason') });

export const handlers: ReadonlyMap<string, CommandHandler> = new Map<string, CommandHandler>([
  ['key create', (d, i) => key.keyCreate(d, i)],
  ['key show', (d, i) => key.keyShow(d, i)],
  ['key rotate', (d, i) => key.keyRotate(d, i)],
  ['key revoke', (d, i) => key.keyRevoke(d, i)],
  ['usage', (d, i) => usage.usage(d, i)],
  ['models', (d, i) => models.models(d, i)],
  ['privacy export', (d, i) => privacy.privacyExport(d, i)],
  ['privacy delete', (d, i) => privacy.privacyDelete(d, i)],
  ['mod lookup', moderator((d, i, o) => mod.modLookup(d, i, { user: userOption(o) }))],
  ['mod revoke', moderator((d, i, o) => mod.modKey(d, i, 'revoke', target(o)))],
  ['mod suspend', moderator((d, i, o) => mod.modKey(d, i, 'suspend', target(o)))],
  ['mod restore', moderator((d, i, o) => mod.modKey(d, i, 'restore', target(o)))],
  ['mod tier', moderator((d, i, o) => mod.modKey(d, i, 'tier', { ...target(o), tier: requiredString(o, 'tier') }))],
  ['mod ban', moderator((d, i, o) => mod.modBan(d, i, { ...target(o), banned: true }))],
  ['mod unban', moderator((d, i, o) => mod.modBan(d, i, { ...target(o), banned: false }))],
  ['mod stats', moderator((d, i) => mod.modStats(d, i))],
  // A context menu has no reason field.
  [
    mod.CONTEXT_REVOKE,
    moderator((d, i, o) =>
      mod.modKey(d, i, 'revoke', { ...target(o), reason: optionalString(o, 'reason') ?? 'via the user menu' }),
    ),
  ],
  [mod.CONTEXT_LOOKUP, moderator((d, i, o) => mod.modLookup(d, i, { user: userOption(o) }))],
]);

export const components: ReadonlyMap<string, ComponentHandler> = new Map<string, ComponentHandler>([
  [privacy.DELETE_CONFIRM, (d, i) => privacy.privacyDeleteConfirm(d, i)],
]);
