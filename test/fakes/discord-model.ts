// Building blocks of the fake Discord (test/fakes/discord.ts): snowflakes, Discord's permission
// arithmetic, JSON error bodies, and builders for the API objects (users, roles, channels, members,
// messages) in discord-api-types v10 shapes.
import {
  type APIAttachment,
  type APIDMChannel,
  type APIEmbed,
  type APIGuildMember,
  type APIMessage,
  type APIMessageTopLevelComponent,
  type APIOverwrite,
  type APIRole,
  type APITextChannel,
  type APIUser,
  type ChannelFlags,
  ChannelType,
  MessageType,
  OverwriteType,
  PermissionFlagsBits,
  type RoleFlags,
  type UserFlags,
} from 'discord-api-types/v10';

/** Discord's epoch (2015-01-01T00:00:00Z) in ms. */
export const DISCORD_EPOCH = 1420070400000n;

let lastSnowflake = 0n;

/** A fresh, strictly increasing snowflake; `at` backdates it (account age is read from the id). */
export function snowflake(at?: Date | number): string {
  const ms = BigInt(at === undefined ? Date.now() : typeof at === 'number' ? at : at.getTime());
  if (at !== undefined) {
    // Backdated ids do not take part in the monotonic sequence (tests ask for a specific time).
    return String(((ms - DISCORD_EPOCH) << 22n) | BigInt(Math.floor(Math.random() * 4096)));
  }
  let id = (ms - DISCORD_EPOCH) << 22n;
  if (id <= lastSnowflake) id = lastSnowflake + 1n;
  lastSnowflake = id;
  return String(id);
}

/** When a snowflake was minted (ms since the Unix epoch). */
export function snowflakeTime(id: string): number {
  return Number((BigInt(id) >> 22n) + DISCORD_EPOCH);
}

export function isSnowflake(value: string): boolean {
  return /^\d{17,20}$/.test(value);
}

// ---------------------------------------------------------------------------------------------
// Errors

export interface DiscordErrorBody {
  message: string;
  code: number;
  errors?: unknown;
}

export class DiscordHttpError extends Error {
  constructor(
    readonly status: number,
    readonly body: DiscordErrorBody,
    readonly headers: Record<string, string> = {},
  ) {
    super(`${status} ${body.code} ${body.message}`);
  }
}

export const E = {
  unauthorized: () => new DiscordHttpError(401, { message: '401: Unauthorized', code: 0 }),
  notFound: () => new DiscordHttpError(404, { message: '404: Not Found', code: 0 }),
  methodNotAllowed: () => new DiscordHttpError(405, { message: '405: Method Not Allowed', code: 0 }),
  unknownChannel: () => new DiscordHttpError(404, { message: 'Unknown Channel', code: 10003 }),
  unknownGuild: () => new DiscordHttpError(404, { message: 'Unknown Guild', code: 10004 }),
  unknownMember: () => new DiscordHttpError(404, { message: 'Unknown Member', code: 10007 }),
  unknownMessage: () => new DiscordHttpError(404, { message: 'Unknown Message', code: 10008 }),
  unknownRole: () => new DiscordHttpError(404, { message: 'Unknown Role', code: 10011 }),
  unknownUser: () => new DiscordHttpError(404, { message: 'Unknown User', code: 10013 }),
  unknownWebhook: () => new DiscordHttpError(404, { message: 'Unknown Webhook', code: 10015 }),
  unknownBan: () => new DiscordHttpError(404, { message: 'Unknown Ban', code: 10026 }),
  unknownCommand: () => new DiscordHttpError(404, { message: 'Unknown application command', code: 10063 }),
  unknownInteraction: () => new DiscordHttpError(404, { message: 'Unknown interaction', code: 10062 }),
  alreadyAcknowledged: () =>
    new DiscordHttpError(400, { message: 'Interaction has already been acknowledged.', code: 40060 }),
  missingAccess: () => new DiscordHttpError(403, { message: 'Missing Access', code: 50001 }),
  emptyMessage: () => new DiscordHttpError(400, { message: 'Cannot send an empty message', code: 50006 }),
  cannotDm: () => new DiscordHttpError(403, { message: 'Cannot send messages to this user', code: 50007 }),
  missingPermissions: () => new DiscordHttpError(403, { message: 'Missing Permissions', code: 50013 }),
  invalidWebhookToken: () => new DiscordHttpError(401, { message: 'Invalid Webhook Token', code: 50027 }),
  invalidJson: () => new DiscordHttpError(400, { message: 'The request body contains invalid JSON.', code: 50109 }),
  invalidFormBody: (errors: Record<string, unknown>) =>
    new DiscordHttpError(400, { message: 'Invalid Form Body', code: 50035, errors }),
};

/** `{field: {_errors: [{code, message}]}}`, Discord's nested 50035 error format (dotted paths nest). */
export function fieldError(path: string, code: string, message: string): DiscordHttpError {
  const errors: Record<string, unknown> = {};
  let node = errors;
  const parts = path.split('.');
  for (const [i, part] of parts.entries()) {
    if (i === parts.length - 1) node[part] = { _errors: [{ code, message }] };
    else {
      const next: Record<string, unknown> = {};
      node[part] = next;
      node = next;
    }
  }
  return E.invalidFormBody(errors);
}

// ---------------------------------------------------------------------------------------------
// Permissions

export const ALL_PERMISSIONS: bigint = Object.values(PermissionFlagsBits).reduce((all, bit) => all | bit, 0n);

/** What @everyone gets in a new server (roughly Discord's default for a community server). */
export const DEFAULT_EVERYONE_PERMISSIONS =
  PermissionFlagsBits.CreateInstantInvite |
  PermissionFlagsBits.ChangeNickname |
  PermissionFlagsBits.ViewChannel |
  PermissionFlagsBits.SendMessages |
  PermissionFlagsBits.SendMessagesInThreads |
  PermissionFlagsBits.CreatePublicThreads |
  PermissionFlagsBits.EmbedLinks |
  PermissionFlagsBits.AttachFiles |
  PermissionFlagsBits.AddReactions |
  PermissionFlagsBits.UseExternalEmojis |
  PermissionFlagsBits.UseExternalStickers |
  PermissionFlagsBits.ReadMessageHistory |
  PermissionFlagsBits.UseApplicationCommands |
  PermissionFlagsBits.Connect |
  PermissionFlagsBits.Speak |
  PermissionFlagsBits.UseVAD;

/** What an app gets in a DM with a user (`app_permissions` of a DM interaction). */
export const DM_APP_PERMISSIONS =
  PermissionFlagsBits.ViewChannel |
  PermissionFlagsBits.SendMessages |
  PermissionFlagsBits.EmbedLinks |
  PermissionFlagsBits.AttachFiles |
  PermissionFlagsBits.ReadMessageHistory |
  PermissionFlagsBits.AddReactions |
  PermissionFlagsBits.UseExternalEmojis;

export interface PermissionInput {
  ownerId: string;
  guildId: string;
  roles: Map<string, APIRole>;
  memberId: string;
  memberRoles: string[];
  /** ISO time; a timed-out member keeps only View Channel and Read Message History. */
  communicationDisabledUntil?: string | null;
  overwrites?: APIOverwrite[];
}

/** Discord's documented algorithm: base permissions from roles, then channel overwrites, then timeouts. */
export function computePermissions(input: PermissionInput): bigint {
  if (input.memberId === input.ownerId) return ALL_PERMISSIONS;
  const everyone = input.roles.get(input.guildId);
  let base = everyone ? BigInt(everyone.permissions) : 0n;
  for (const roleId of input.memberRoles) {
    const role = input.roles.get(roleId);
    if (role) base |= BigInt(role.permissions);
  }
  if ((base & PermissionFlagsBits.Administrator) !== 0n) return ALL_PERMISSIONS;

  let perms = base;
  if (input.overwrites) {
    const everyoneOverwrite = input.overwrites.find((o) => o.id === input.guildId);
    if (everyoneOverwrite) {
      perms &= ~BigInt(everyoneOverwrite.deny);
      perms |= BigInt(everyoneOverwrite.allow);
    }
    let allow = 0n;
    let deny = 0n;
    for (const o of input.overwrites) {
      if (o.type === OverwriteType.Role && o.id !== input.guildId && input.memberRoles.includes(o.id)) {
        allow |= BigInt(o.allow);
        deny |= BigInt(o.deny);
      }
    }
    perms &= ~deny;
    perms |= allow;
    const memberOverwrite = input.overwrites.find((o) => o.type === OverwriteType.Member && o.id === input.memberId);
    if (memberOverwrite) {
      perms &= ~BigInt(memberOverwrite.deny);
      perms |= BigInt(memberOverwrite.allow);
    }
    // Without View Channel nothing else in the channel applies.
    if ((perms & PermissionFlagsBits.ViewChannel) === 0n) return 0n;
  }
  const until = input.communicationDisabledUntil;
  if (until && Date.parse(until) > Date.now()) {
    perms &= PermissionFlagsBits.ViewChannel | PermissionFlagsBits.ReadMessageHistory;
  }
  return perms;
}

// ---------------------------------------------------------------------------------------------
// Builders

export interface UserInput {
  id?: string;
  username?: string;
  globalName?: string | null;
  bot?: boolean;
  /** Backdates the snowflake (account age). Ignored when `id` is given. */
  createdAt?: Date | number;
}

let userCounter = 0;

export function buildUser(input: UserInput = {}): APIUser {
  const id = input.id ?? snowflake(input.createdAt);
  const username = input.username ?? `user${++userCounter}`;
  return {
    id,
    username,
    discriminator: '0',
    global_name: input.globalName === undefined ? (input.bot ? null : username) : input.globalName,
    avatar: null,
    ...(input.bot ? { bot: true } : {}),
    public_flags: 0 as UserFlags,
    flags: 0 as UserFlags,
    banner: null,
    accent_color: null,
    avatar_decoration_data: null,
    collectibles: null,
    primary_guild: null,
  };
}

export interface RoleInput {
  id?: string;
  name: string;
  permissions?: bigint | string;
  position?: number;
  color?: number;
  hoist?: boolean;
  mentionable?: boolean;
  managed?: boolean;
  /** For a bot's managed role. */
  botId?: string;
}

export function buildRole(input: RoleInput): APIRole {
  const color = input.color ?? 0;
  return {
    id: input.id ?? snowflake(),
    name: input.name,
    color,
    colors: { primary_color: color, secondary_color: null, tertiary_color: null },
    hoist: input.hoist ?? false,
    icon: null,
    unicode_emoji: null,
    position: input.position ?? 1,
    permissions: String(input.permissions ?? 0n),
    managed: input.managed ?? false,
    mentionable: input.mentionable ?? false,
    flags: 0 as RoleFlags,
    ...(input.botId ? { tags: { bot_id: input.botId } } : {}),
  };
}

export interface TextChannelInput {
  id?: string;
  name: string;
  position?: number;
  topic?: string | null;
  overwrites?: APIOverwrite[];
  parentId?: string | null;
}

export function buildTextChannel(guildId: string, input: TextChannelInput): APITextChannel {
  return {
    id: input.id ?? snowflake(),
    type: ChannelType.GuildText,
    guild_id: guildId,
    name: input.name,
    position: input.position ?? 0,
    permission_overwrites: input.overwrites ?? [],
    parent_id: input.parentId ?? null,
    nsfw: false,
    topic: input.topic ?? null,
    rate_limit_per_user: 0,
    last_message_id: null,
    last_pin_timestamp: null,
    flags: 0 as ChannelFlags,
  };
}

export function buildDmChannel(recipient: APIUser): APIDMChannel {
  return {
    id: snowflake(),
    type: ChannelType.DM,
    name: null,
    last_message_id: null,
    recipients: [recipient],
    flags: 0 as ChannelFlags,
  };
}

/** What the fake stores about a member; API shapes are derived from it. */
export interface MemberState {
  user: APIUser;
  roles: string[];
  joined_at: string;
  pending: boolean;
  nick: string | null;
  communication_disabled_until: string | null;
  premium_since: string | null;
  flags: number;
}

export function memberJson(m: MemberState): APIGuildMember {
  return {
    user: m.user,
    nick: m.nick,
    avatar: null,
    banner: null,
    roles: [...m.roles],
    joined_at: m.joined_at,
    premium_since: m.premium_since,
    deaf: false,
    mute: false,
    flags: m.flags,
    pending: m.pending,
    communication_disabled_until: m.communication_disabled_until,
  };
}

export interface StoredFile {
  /** The multipart field, e.g. `files[0]`. */
  field: string;
  name: string;
  contentType: string;
  data: Buffer;
}

export interface MessageInput {
  id?: string;
  channelId: string;
  author: APIUser;
  content?: string;
  embeds?: APIEmbed[];
  components?: APIMessageTopLevelComponent[];
  flags?: number;
  type?: MessageType;
  files?: StoredFile[];
  attachmentBase: string;
  webhookId?: string;
  applicationId?: string;
  guildId?: string;
}

export function buildAttachments(files: StoredFile[] | undefined, channelId: string, base: string): APIAttachment[] {
  return (files ?? []).map((f) => {
    const id = snowflake();
    const url = `${base}/attachments/${channelId}/${id}/${encodeURIComponent(f.name)}`;
    return {
      id,
      filename: f.name,
      size: f.data.length,
      url,
      proxy_url: url,
      content_type: f.contentType,
    };
  });
}

export function buildMessage(input: MessageInput): APIMessage {
  return {
    id: input.id ?? snowflake(),
    channel_id: input.channelId,
    ...(input.guildId ? { guild_id: input.guildId } : {}),
    author: input.author,
    content: input.content ?? '',
    timestamp: new Date().toISOString(),
    edited_timestamp: null,
    tts: false,
    mention_everyone: false,
    mentions: [],
    mention_roles: [],
    attachments: buildAttachments(input.files, input.channelId, input.attachmentBase),
    embeds: input.embeds ?? [],
    pinned: false,
    type: input.type ?? MessageType.Default,
    flags: input.flags ?? 0,
    components: input.components ?? [],
    ...(input.webhookId ? { webhook_id: input.webhookId } : {}),
    ...(input.applicationId ? { application_id: input.applicationId } : {}),
  } as APIMessage;
}

// ---------------------------------------------------------------------------------------------
// Message validation (a subset of Discord's limits; stricter is fine)

export interface MessageBody {
  content?: unknown;
  embeds?: unknown;
  components?: unknown;
  flags?: unknown;
  attachments?: unknown;
  sticker_ids?: unknown;
  poll?: unknown;
}

const EMBED_LIMITS: Array<[string, (e: APIEmbed) => string | undefined, number]> = [
  ['title', (e) => e.title, 256],
  ['description', (e) => e.description, 4096],
  ['footer.text', (e) => e.footer?.text, 2048],
  ['author.name', (e) => e.author?.name, 256],
];

/**
 * Validates what a message create/edit carries. `partial` is for edits: absent fields keep their
 * value, so emptiness is judged on the merged message by the caller.
 */
export function validateMessageBody(body: MessageBody, partial: boolean, fileCount: number): void {
  if (body.content !== undefined && body.content !== null) {
    if (typeof body.content !== 'string') throw fieldError('content', 'BASE_TYPE_STRING', 'Must be a string.');
    if (body.content.length > 2000)
      throw fieldError('content', 'BASE_TYPE_MAX_LENGTH', 'Must be 2000 or fewer in length.');
  }
  if (body.embeds !== undefined && body.embeds !== null) {
    if (!Array.isArray(body.embeds)) throw fieldError('embeds', 'BASE_TYPE_LIST', 'Must be a list.');
    if (body.embeds.length > 10) throw fieldError('embeds', 'BASE_TYPE_MAX_LENGTH', 'Must be 10 or fewer in length.');
    for (const [i, embed] of (body.embeds as APIEmbed[]).entries()) {
      let total = 0;
      for (const [name, get, max] of EMBED_LIMITS) {
        const value = get(embed);
        if (value === undefined) continue;
        total += value.length;
        if (value.length > max)
          throw fieldError(`embeds.${i}.${name}`, 'BASE_TYPE_MAX_LENGTH', `Must be ${max} or fewer in length.`);
      }
      const fields = embed.fields ?? [];
      if (fields.length > 25)
        throw fieldError(`embeds.${i}.fields`, 'BASE_TYPE_MAX_LENGTH', 'Must be 25 or fewer in length.');
      for (const [j, f] of fields.entries()) {
        if (!f.name || !f.value)
          throw fieldError(`embeds.${i}.fields.${j}.value`, 'BASE_TYPE_REQUIRED', 'This field is required');
        if (f.name.length > 256 || f.value.length > 1024)
          throw fieldError(`embeds.${i}.fields.${j}.value`, 'BASE_TYPE_MAX_LENGTH', 'Must be 1024 or fewer in length.');
        total += f.name.length + f.value.length;
      }
      if (total > 6000)
        throw fieldError('embeds', 'MAX_EMBED_SIZE_EXCEEDED', 'Embed size exceeds maximum size of 6000');
    }
  }
  if (body.components !== undefined && body.components !== null) {
    if (!Array.isArray(body.components)) throw fieldError('components', 'BASE_TYPE_LIST', 'Must be a list.');
    if (body.components.length > 5)
      throw fieldError('components', 'BASE_TYPE_MAX_LENGTH', 'Must be 5 or fewer in length.');
    for (const [i, row] of (body.components as Array<{ type?: number; components?: unknown[] }>).entries()) {
      if (row.type !== 1) continue; // Components v2 layouts are not checked.
      const inner = (row.components ?? []) as Array<{ custom_id?: string; label?: string; type?: number }>;
      if (inner.length === 0 || inner.length > 5)
        throw fieldError(`components.${i}.components`, 'BASE_TYPE_BAD_LENGTH', 'Must be between 1 and 5 in length.');
      for (const [j, c] of inner.entries()) {
        if (c.custom_id !== undefined && c.custom_id.length > 100)
          throw fieldError(
            `components.${i}.components.${j}.custom_id`,
            'BASE_TYPE_MAX_LENGTH',
            'Must be 100 or fewer in length.',
          );
        if (c.label !== undefined && c.label.length > 80)
          throw fieldError(
            `components.${i}.components.${j}.label`,
            'BASE_TYPE_MAX_LENGTH',
            'Must be 80 or fewer in length.',
          );
      }
    }
  }
  if (!partial && isEmptyMessage(body, fileCount)) throw E.emptyMessage();
}

export function isEmptyMessage(body: MessageBody, fileCount: number): boolean {
  const hasContent = typeof body.content === 'string' && body.content.length > 0;
  const hasEmbeds = Array.isArray(body.embeds) && body.embeds.length > 0;
  const hasComponents = Array.isArray(body.components) && body.components.length > 0;
  const hasStickers = Array.isArray(body.sticker_ids) && body.sticker_ids.length > 0;
  const hasAttachments = Array.isArray(body.attachments) && body.attachments.length > 0;
  return (
    !hasContent && !hasEmbeds && !hasComponents && !hasStickers && !body.poll && fileCount === 0 && !hasAttachments
  );
}
