// What the bot's commands and membership sync are written against. Command logic is plain
// functions over these types; discord.js only appears in the wiring (client, router, directory).
import type { DiscordConfig } from '../src/config/schema.js';
import type { Services } from '../src/services.js';

/** What Discord says about a member of the configured server right now (REST Get Guild Member). */
export interface GuildMember {
  userId: string;
  roleIds: string[];
  /** Membership screening not passed yet. */
  pending: boolean;
  joinedAt: Date | null;
}

/** The Discord side the bot needs besides interactions; bot/discord-directory.ts implements it with discord.js. */
export interface DiscordDirectory {
  /** The member, or null when the user is not in the server (Unknown Member). */
  member(userId: string): Promise<GuildMember | null>;
  isBanned(userId: string): Promise<boolean>;
  /** Best effort: false when the user cannot be messaged (DMs closed, no shared server). */
  dm(userId: string, content: string): Promise<boolean>;
  /** Posts to the mod-log channel when one is configured. Best effort, never throws. */
  modLog(content: string): Promise<void>;
}

export interface BotDeps {
  services: Services;
  discord: DiscordDirectory;
  config: DiscordConfig;
}

/** Who ran a command, from the interaction. */
export interface Invoker {
  userId: string;
  /** Null for a DM invocation. */
  guildId: string | null;
  /** Permissions Discord computed for the invoker in the channel; null outside a server. */
  permissions: bigint | null;
  roleIds: string[];
}

/** What a command answers; every reply is ephemeral. */
export type Reply =
  | { kind: 'text'; content: string }
  /** Shows a new key once; the router edits the reply to `redacted` after `discord.keyRevealMs`. */
  | { kind: 'key'; content: string; redacted: string }
  | { kind: 'file'; content: string; file: { name: string; data: Buffer } }
  /** A question with one confirm button; pressing it runs the component handler named by `customId`. */
  | { kind: 'confirm'; content: string; customId: string; label: string };

/** An expected refusal; the router shows its message as an ephemeral reply. Anything else is a bug. */
export class UserError extends Error {}
