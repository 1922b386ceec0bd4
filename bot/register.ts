// Guild-scoped slash command registration (guild commands update at once; global ones take up to an
// hour). At start the bot registers only when Discord's copy differs from the definitions, judged on
// the fields that change what members see: no local state file to get out of step.
import {
  type APIApplicationCommand,
  ApplicationCommandType,
  type REST,
  type RESTPostAPIApplicationCommandsJSONBody,
  Routes,
} from 'discord.js';

export type CommandDefinition = RESTPostAPIApplicationCommandsJSONBody;

/** Replaces the server's whole command set with `definitions`. */
export async function registerCommands(
  rest: REST,
  appId: string,
  guildId: string,
  definitions: CommandDefinition[],
): Promise<void> {
  await rest.put(Routes.applicationGuildCommands(appId, guildId), { body: definitions });
}

/** Registers when Discord's commands differ from `definitions`; true when it did. */
export async function syncCommands(
  rest: REST,
  appId: string,
  guildId: string,
  definitions: CommandDefinition[],
): Promise<boolean> {
  const current = (await rest.get(Routes.applicationGuildCommands(appId, guildId))) as APIApplicationCommand[];
  // Discord documents `contexts` for global commands only and may drop it from guild ones; it
  // counts only when Discord's copy keeps it.
  const withContexts = current.some((c) => c.contexts != null);
  if (canonical(current, withContexts) === canonical(definitions, withContexts)) return false;
  await registerCommands(rest, appId, guildId, definitions);
  return true;
}

/** Discord omits defaults (`required: false`, empty lists) and adds ids and versions; compare without them. */
function clean(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(clean);
  if (value === null || typeof value !== 'object') return value;
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(value).sort()) {
    const v = clean((value as Record<string, unknown>)[k]);
    const isDefault = v === undefined || v === null || v === false || (Array.isArray(v) && v.length === 0);
    if (!isDefault && !k.endsWith('_localizations')) out[k] = v;
  }
  return out;
}

function canonical(commands: Array<CommandDefinition | APIApplicationCommand>, withContexts: boolean): string {
  const meaningful = commands.map((c) =>
    clean({
      name: c.name,
      type: c.type ?? ApplicationCommandType.ChatInput,
      description: 'description' in c ? c.description : '',
      options: 'options' in c ? c.options : undefined,
      default_member_permissions: c.default_member_permissions,
      contexts: withContexts ? c.contexts : undefined,
    }),
  );
  return JSON.stringify(meaningful.map((c) => JSON.stringify(c)).sort());
}
