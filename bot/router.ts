// The one interactionCreate handler: acknowledges within Discord's 3 seconds (ephemeral from the
// first response, or the later edit would be public), runs the command or button handler, and
// turns its Reply into the edit. Refusals show their message; anything else a request id only.
import {
  ActionRowBuilder,
  ApplicationCommandOptionType,
  ButtonBuilder,
  type ButtonInteraction,
  ButtonStyle,
  type ChatInputCommandInteraction,
  type CommandInteractionOption,
  type Interaction,
  type InteractionEditReplyOptions,
  MessageFlags,
  type RepliableInteraction,
  type UserContextMenuCommandInteraction,
} from 'discord.js';
import type { Logger } from 'pino';
import type { InFlight } from '../src/app/in-flight.js';
import { newId } from '../src/domain/ids.js';
import { type CommandOptions, commandPath, components, handlers } from './commands/index.js';
import { describeError } from './errors.js';
import type { KeyReveals } from './key-reveals.js';
import { type BotDeps, type Invoker, type Reply, UserError } from './types.js';

function invokerOf(interaction: Interaction): Invoker {
  const member = interaction.member;
  // A cached member's roles come from discord.js's role cache, which always holds @everyone (the guild id).
  const roleIds = !member
    ? []
    : Array.isArray(member.roles)
      ? member.roles
      : [...member.roles.cache.keys()].filter((id) => id !== interaction.guildId);
  return {
    userId: interaction.user.id,
    guildId: interaction.guildId,
    permissions: interaction.memberPermissions?.bitfield ?? null,
    roleIds,
  };
}

function flatten(options: readonly CommandInteractionOption[], into: CommandOptions = {}): CommandOptions {
  for (const o of options) {
    if (o.type === ApplicationCommandOptionType.Subcommand || o.type === ApplicationCommandOptionType.SubcommandGroup) {
      flatten(o.options ?? [], into);
    } else {
      // User, role, channel and mentionable options carry the id as their value.
      into[o.name] = o.value;
    }
  }
  return into;
}

function route(interaction: ChatInputCommandInteraction | UserContextMenuCommandInteraction) {
  if (interaction.isUserContextMenuCommand()) {
    return { path: interaction.commandName, opts: { user: interaction.targetId } };
  }
  const sub = [interaction.options.getSubcommandGroup(false), interaction.options.getSubcommand(false)];
  const path = commandPath(interaction.commandName, sub.filter(Boolean).join(' ') || null);
  return { path, opts: flatten(interaction.options.data) };
}

function toEdit(reply: Reply): InteractionEditReplyOptions {
  // Replies mention members; nobody is pinged by them.
  const base = { content: reply.content, allowedMentions: { parse: [] }, components: [] };
  switch (reply.kind) {
    case 'file':
      return { ...base, files: [{ attachment: reply.file.data, name: reply.file.name }] };
    case 'confirm': {
      const button = new ButtonBuilder().setCustomId(reply.customId).setLabel(reply.label).setStyle(ButtonStyle.Danger);
      return { ...base, components: [new ActionRowBuilder<ButtonBuilder>().addComponents(button)] };
    }
    default:
      return base;
  }
}

export function createRouter(
  deps: BotDeps,
  reveals: KeyReveals,
  log: Logger,
  work: InFlight,
): (i: Interaction) => Promise<void> {
  async function run(what: string, handler: () => Promise<Reply>): Promise<Reply> {
    try {
      return await handler();
    } catch (err) {
      if (err instanceof UserError) return { kind: 'text', content: err.message };
      const requestId = newId('req');
      log.error({ requestId, command: what, err: describeError(err) }, 'command failed');
      return {
        kind: 'text',
        content: `Something went wrong on our side (request id ${requestId}). Try again shortly.`,
      };
    }
  }

  async function answer(interaction: RepliableInteraction, what: string, reply: Reply): Promise<void> {
    try {
      await interaction.editReply(toEdit(reply));
      if (reply.kind === 'key') reveals.schedule(interaction, reply.redacted);
    } catch (err) {
      log.error({ command: what, err: describeError(err) }, 'could not deliver a command reply');
    }
  }

  async function command(interaction: ChatInputCommandInteraction | UserContextMenuCommandInteraction) {
    const invoker = invokerOf(interaction);
    // First, before any store work: the deadline is 3 s, and ephemeral must be set on this response.
    await interaction.deferReply({ flags: MessageFlags.Ephemeral });
    const { path, opts } = route(interaction);
    const handler = handlers.get(path);
    const reply = await run(path, () => {
      if (!handler) throw new UserError('This command is not available any more.');
      return handler(deps, invoker, opts);
    });
    await answer(interaction, path, reply);
  }

  async function button(interaction: ButtonInteraction) {
    const invoker = invokerOf(interaction);
    // Our buttons sit on ephemeral replies; the answer replaces the question (and its button) there.
    await interaction.deferUpdate();
    const handler = components.get(interaction.customId);
    const reply = await run(`button ${interaction.customId}`, () => {
      if (!handler) throw new UserError('This button has expired. Run the command again.');
      return handler(deps, invoker);
    });
    await answer(interaction, `button ${interaction.customId}`, reply);
  }

  return async (interaction) => {
    try {
      if (interaction.isChatInputCommand() || interaction.isUserContextMenuCommand()) {
        await work.track(command(interaction));
      } else if (interaction.isButton()) await work.track(button(interaction));
    } catch (err) {
      // Only acknowledging can fail here (too late, or Discord unreachable): nothing left to answer.
      log.warn({ interactionType: interaction.type, err: describeError(err) }, 'could not acknowledge an interaction');
    }
  };
}
