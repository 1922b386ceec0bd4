// A faithful fake Discord for tests: REST under `/api/v10` and a Gateway v10 WebSocket on one
// loopback port, good enough for an unmodified discord.js Client to log in and work against it.
//
//   const fake = await startFakeDiscord();
//   const client = new Client({ intents, rest: { api: `${fake.url}/api` } });
//   await client.login(fake.token);
//   const i = fake.interact({ type: 'chat-input', name: 'ping', userId });
//   const first = await i.response();          // { type: 5, ephemeral: true, ... }
//   const [edit] = await i.edits(1);           // { data: { content: 'pong' } }
//
// It holds one guild (roles, text channels incl. a private #mod-log, members, bans), users, DM
// channels and registered commands; tests change that state with the methods below, which also
// send the gateway dispatches Discord would send (and only to sessions with the right intents).
// It enforces Discord's rules where the bot depends on them: bot-token auth, per-route rate limits
// with real headers (and injectable 429s), the 3-second first-response window (10062), single
// acknowledgement (40060), the 15-minute interaction token, ephemerality fixed by the first
// response, DMs to users with DMs closed or no shared server (50007), 404s with Discord's codes,
// privileged intents (close 4014) and resumable sessions. Where unsure it is stricter than Discord.
import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  type APIApplicationCommand,
  type APIApplicationCommandInteractionDataOption,
  type APIApplicationCommandOption,
  type APIBan,
  type APIChannel,
  type APIDMChannel,
  type APIEmbed,
  type APIGuild,
  type APIGuildMember,
  type APIInteraction,
  type APIInteractionDataResolved,
  type APIInteractionDataResolvedGuildMember,
  type APIInteractionGuildMember,
  type APIMessage,
  type APIMessageTopLevelComponent,
  type APIOverwrite,
  type APIRole,
  type APITextChannel,
  type APIUser,
  ApplicationCommandOptionType,
  ApplicationCommandType,
  ApplicationFlags,
  ChannelType,
  ComponentType,
  GatewayDispatchEvents,
  type GatewayGuildCreateDispatchData,
  GatewayIntentBits,
  type GuildSystemChannelFlags,
  InteractionResponseType,
  InteractionType,
  type Locale,
  MessageFlags,
  MessageType,
  OverwriteType,
  PermissionFlagsBits,
} from 'discord-api-types/v10';
import { FakeGateway, type GatewayConnectionInfo, type GatewayFrame } from './discord-gateway.js';
import {
  ALL_PERMISSIONS,
  buildAttachments,
  buildDmChannel,
  buildMessage,
  buildRole,
  buildTextChannel,
  buildUser,
  computePermissions,
  DEFAULT_EVERYONE_PERMISSIONS,
  DiscordHttpError,
  DM_APP_PERMISSIONS,
  E,
  fieldError,
  isEmptyMessage,
  isSnowflake,
  type MemberState,
  type MessageBody,
  memberJson,
  type RoleInput,
  type StoredFile,
  snowflake,
  type TextChannelInput,
  type UserInput,
  validateMessageBody,
} from './discord-model.js';

export type { RoleInput, StoredFile, TextChannelInput, UserInput } from './discord-model.js';
export { snowflake, snowflakeTime } from './discord-model.js';

// ---------------------------------------------------------------------------------------------
// Public types

export interface FakeDiscordOptions {
  /** The bot token (default: a random one). */
  token?: string;
  /** Whether the Server Members privileged intent is enabled in the "Developer Portal" (default true). */
  membersIntentAllowed?: boolean;
  presenceIntentAllowed?: boolean;
  messageContentIntentAllowed?: boolean;
  guildName?: string;
  botUsername?: string;
  /** Permissions of the bot's managed role (default: view, send, embed, attach, history, ban, kick). */
  botPermissions?: bigint;
  /** Permissions of @everyone (default: Discord's defaults for a new server). */
  everyonePermissions?: bigint;
  /** heartbeat_interval in HELLO (default 41250 ms, as Discord). */
  heartbeatIntervalMs?: number;
  /** First-response window (default 3000 ms; only shorten it, never lengthen). */
  interactionResponseWindowMs?: number;
  /** Lifetime of an interaction token for webhook calls (default 15 min). */
  interactionTokenTtlMs?: number;
  /** Requests per bucket and window, per route and major parameter (default 50 per 1000 ms). */
  rateLimit?: { limit: number; windowMs: number };
}

export interface RecordedCall {
  method: string;
  /** Path after `/api/v10`, e.g. `/channels/123/messages`. */
  path: string;
  /** The matched route, e.g. `/channels/:channel/messages`, or null. */
  route: string | null;
  query: Record<string, string>;
  /** Parsed JSON body (for multipart: the parsed `payload_json`). */
  body: unknown;
  files: Array<{ field: string; name: string; contentType: string; size: number }>;
  authorized: boolean;
  status: number;
  /** Discord's JSON error code when the answer was an error. */
  code?: number;
  at: number;
}

export interface RecordedFile {
  field: string;
  name: string;
  contentType: string;
  size: number;
  data: Buffer;
  /** The content as UTF-8 (convenient for text attachments). */
  text: string;
}

export interface RecordedResponse {
  /** Interaction callback type: 4 reply, 5 deferred reply, 6 deferred update, 7 update, 9 modal. */
  type: number;
  flags: number;
  ephemeral: boolean;
  /** `data` of the callback as sent (content, embeds, components, flags, ...). */
  data: Record<string, unknown> | null;
  content: string | null;
  embeds: APIEmbed[];
  components: APIMessageTopLevelComponent[];
  files: RecordedFile[];
  at: number;
  /** ms after the interaction was dispatched. */
  delayMs: number;
}

export interface RecordedEdit {
  /** `@original` or a follow-up message id. */
  target: string;
  data: Record<string, unknown>;
  content: string | null;
  embeds: APIEmbed[] | null;
  components: APIMessageTopLevelComponent[] | null;
  files: RecordedFile[];
  at: number;
}

export interface RecordedFollowUp {
  messageId: string;
  data: Record<string, unknown>;
  content: string | null;
  flags: number;
  ephemeral: boolean;
  /** True when it replaced a deferred "thinking" response (Discord's first follow-up after type 5). */
  replacedDeferral: boolean;
  files: RecordedFile[];
  at: number;
}

export interface RefusedResponse {
  route: 'callback' | 'webhook';
  method: string;
  status: number;
  code: number;
  at: number;
}

export interface RecordedInteraction {
  id: string;
  token: string;
  kind: InteractInput['type'];
  /** Command name, or custom_id for a component. */
  name: string;
  userId: string;
  guildId: string | null;
  channelId: string;
  dispatchedAt: number;
  /** How many gateway sessions it was dispatched to (0: no bot connected). */
  deliveredTo: number;
  payload: APIInteraction;
  /** The first response, once accepted. */
  response: RecordedResponse | null;
  /** Fixed by the first response (null before it). */
  ephemeral: boolean | null;
  edits: RecordedEdit[];
  followUps: RecordedFollowUp[];
  /** The @original message as it stands (null before a reply, after a modal, or once deleted). */
  original: APIMessage | null;
  originalDeleted: boolean;
  refused: RefusedResponse[];
}

export interface InteractCommon {
  /** The invoking user (must be a member for a guild invocation). */
  userId: string;
  /** Guild text channel (default #general); ignored with `dm`. */
  channelId?: string;
  /** Invoke in the bot's DM with the user instead of the guild. */
  dm?: boolean;
  locale?: `${Locale}`;
  /**
   * Deliver even if the member lacks the command's default_member_permissions (a server admin can
   * override command permissions, so handlers must re-check).
   */
  bypassCommandPermissions?: boolean;
}

export type OptionValue = string | number | boolean;

export type InteractInput =
  | (InteractCommon & {
      type: 'chat-input';
      name: string;
      subcommandGroup?: string;
      subcommand?: string;
      /** Option values by name; the types come from the registered command (USER/ROLE/CHANNEL take ids). */
      options?: Record<string, OptionValue>;
    })
  | (InteractCommon & { type: 'user-command'; name: string; targetId: string })
  | (InteractCommon & {
      type: 'button';
      customId: string;
      /** The message carrying the button (default: the newest recorded message that has it). */
      messageId?: string;
    });

export interface InteractionHandle {
  id: string;
  token: string;
  payload: APIInteraction;
  record: RecordedInteraction;
  /** Resolves with the first accepted response. */
  response(timeoutMs?: number): Promise<RecordedResponse>;
  /** Resolves once at least `n` edits are recorded. */
  edits(n?: number, timeoutMs?: number): Promise<RecordedEdit[]>;
  /** Resolves once at least `n` follow-ups are recorded. */
  followUps(n?: number, timeoutMs?: number): Promise<RecordedFollowUp[]>;
}

export interface RateLimitInjection {
  method?: string;
  /** A route pattern (`/channels/:channel/messages`), an exact path, or a RegExp on the path. */
  path: string | RegExp;
  /** Seconds (float) in the body; the `retry-after` header is rounded up as Discord does. */
  retryAfter?: number;
  global?: boolean;
  /** How many requests get the 429 (default 1). */
  count?: number;
}

export interface BanOptions {
  reason?: string | null;
  /**
   * A current member also gets GUILD_MEMBER_REMOVE; Discord does not guarantee the order of the two
   * dispatches (default `ban-first`). A user who is not a member only gets GUILD_BAN_ADD.
   */
  order?: 'ban-first' | 'remove-first';
}

export interface MemberInput {
  /** An existing user (see createUser), or a new one is created from `user`. */
  userId?: string;
  user?: UserInput;
  roles?: string[];
  pending?: boolean;
  nick?: string | null;
  joinedAt?: Date;
  communicationDisabledUntil?: Date | null;
}

export interface MemberUpdate {
  roles?: string[];
  pending?: boolean;
  nick?: string | null;
  communicationDisabledUntil?: Date | null;
}

export interface CommandPut {
  scope: 'global' | 'guild';
  guildId: string | null;
  body: unknown;
  at: number;
}

export interface FakeDiscord {
  /** `http://127.0.0.1:PORT`; give discord.js `rest: { api: `${url}/api` }`. */
  url: string;
  gatewayUrl: string;
  token: string;
  applicationId: string;
  botUserId: string;
  guildId: string;
  ownerId: string;
  generalChannelId: string;
  modLogChannelId: string;
  roleIds: { everyone: string; moderator: string; member: string; bot: string };

  /** Every REST call, in order. */
  calls: RecordedCall[];
  /** Messages the bot posted with POST /channels/{c}/messages, per channel id (DMs included). */
  messages: Map<string, APIMessage[]>;
  /** Messages the bot sent in DMs, per recipient user id. */
  dms: Map<string, APIMessage[]>;
  interactions: Map<string, RecordedInteraction>;
  users: Map<string, APIUser>;
  members: Map<string, MemberState>;
  bans: Map<string, APIBan>;
  roles: Map<string, APIRole>;
  channels: Map<string, APITextChannel>;
  dmChannels: Map<string, APIDMChannel>;
  /** Registered commands. */
  commands: { global: APIApplicationCommand[]; guild: APIApplicationCommand[] };
  /** Every bulk overwrite (PUT) of commands. */
  commandPuts: CommandPut[];
  /** Raw gateway frames in both directions. */
  gatewayFrames: GatewayFrame[];
  gatewayConnections: GatewayConnectionInfo[];
  /** IDENTIFY payloads received. */
  identifies: Array<Record<string, unknown>>;
  readonly identifyCount: number;
  readonly resumeCount: number;
  /** Intents of each live (not invalidated) session. */
  sessionIntents(): number[];

  createUser(input?: UserInput): APIUser;
  addMember(input?: MemberInput): MemberState;
  removeMember(userId: string): void;
  banUser(userId: string, options?: BanOptions): void;
  unbanUser(userId: string): void;
  updateMember(userId: string, update: MemberUpdate): MemberState;
  addRole(input: RoleInput): APIRole;
  addChannel(input: TextChannelInput): APITextChannel;
  setDmsClosed(userId: string, closed?: boolean): void;
  /** Permissions of a member, guild-wide or in a channel (owner and Administrator get everything). */
  permissionsOf(userId: string, channelId?: string): bigint;

  interact(input: InteractInput): InteractionHandle;

  /** Closes every gateway socket with `code` (4000: the client resumes). */
  closeGateway(code?: number, reason?: string): void;
  /** Sends op 7 Reconnect. */
  requestReconnect(): void;
  /** Sends op 9 Invalid Session. */
  invalidateSession(resumable: boolean): void;
  /** The next matching request(s) get a 429. */
  injectRateLimit(injection: RateLimitInjection): void;
  /** Resolves with the first truthy value of `check`, re-evaluated whenever the fake's state changes. */
  waitFor<T>(check: () => T | undefined | null | false, timeoutMs?: number, what?: string): Promise<T>;
  close(): Promise<void>;
}

// ---------------------------------------------------------------------------------------------
// Implementation

const DEFAULT_BOT_PERMISSIONS =
  PermissionFlagsBits.ViewChannel |
  PermissionFlagsBits.SendMessages |
  PermissionFlagsBits.EmbedLinks |
  PermissionFlagsBits.AttachFiles |
  PermissionFlagsBits.ReadMessageHistory |
  PermissionFlagsBits.BanMembers |
  PermissionFlagsBits.KickMembers;

const MODERATOR_PERMISSIONS =
  PermissionFlagsBits.ManageGuild |
  PermissionFlagsBits.KickMembers |
  PermissionFlagsBits.BanMembers |
  PermissionFlagsBits.ManageMessages |
  PermissionFlagsBits.ModerateMembers |
  PermissionFlagsBits.ViewAuditLog;

const API_PREFIX = '/api/v10';
const ATTACHMENT_SIZE_LIMIT = 10 * 1024 * 1024;

interface RouteContext {
  method: string;
  path: string;
  params: Record<string, string>;
  query: URLSearchParams;
  body: unknown;
  files: StoredFile[];
}

interface RouteResult {
  status: number;
  body?: unknown;
}

interface Route {
  method: string;
  pattern: string;
  segments: string[];
  /** `bot`: Authorization required; `optional`: checked only if present (interaction/webhook tokens). */
  auth: 'bot' | 'optional' | 'none';
  major: string[];
  handler: (ctx: RouteContext) => RouteResult | Promise<RouteResult>;
}

interface Bucket {
  limit: number;
  remaining: number;
  resetAt: number;
  hash: string;
}

interface InteractionState {
  record: RecordedInteraction;
  /** The component's message for type 3 interactions. */
  componentMessageId: string | null;
  /** Follow-up message ids. */
  followUpIds: Set<string>;
  /** A deferred reply still showing "thinking". */
  loading: boolean;
}

interface StoredMessage {
  message: APIMessage;
  channelId: string;
  ephemeral: boolean;
  /** Only this user can see it (ephemeral). */
  visibleTo: string | null;
  deleted: boolean;
}

const SNOWFLAKE_PARAMS = new Set(['guild', 'user', 'channel', 'app', 'interaction', 'command', 'role']);

function toRecordedFiles(files: StoredFile[]): RecordedFile[] {
  return files.map((f) => ({
    field: f.field,
    name: f.name,
    contentType: f.contentType,
    size: f.data.length,
    data: f.data,
    text: f.data.toString('utf8'),
  }));
}

function bucketHash(method: string, pattern: string): string {
  return createHash('sha1').update(`${method} ${pattern}`).digest('hex').slice(0, 16);
}

export async function startFakeDiscord(options: FakeDiscordOptions = {}): Promise<FakeDiscord> {
  const token =
    options.token ??
    `${Buffer.from(String(Date.now())).toString('base64url')}.${Math.random().toString(36).slice(2, 8)}.${Math.random()
      .toString(36)
      .slice(2)}`;
  const membersIntentAllowed = options.membersIntentAllowed ?? true;
  const presenceIntentAllowed = options.presenceIntentAllowed ?? false;
  const messageContentIntentAllowed = options.messageContentIntentAllowed ?? false;
  const responseWindowMs = Math.min(options.interactionResponseWindowMs ?? 3000, 3000);
  const tokenTtlMs = Math.min(options.interactionTokenTtlMs ?? 15 * 60_000, 15 * 60_000);
  const rateLimit = options.rateLimit ?? { limit: 50, windowMs: 1000 };

  const changes = new EventEmitter();
  changes.setMaxListeners(0);
  const changed = () => changes.emit('change');

  // --- State -----------------------------------------------------------------------------------

  const users = new Map<string, APIUser>();
  const members = new Map<string, MemberState>();
  const bans = new Map<string, APIBan>();
  const roles = new Map<string, APIRole>();
  const channels = new Map<string, APITextChannel>();
  const dmChannels = new Map<string, APIDMChannel>(); // by recipient user id
  const dmsClosed = new Set<string>();
  const messages = new Map<string, APIMessage[]>();
  const dms = new Map<string, APIMessage[]>();
  const allMessages = new Map<string, StoredMessage>();
  const interactions = new Map<string, RecordedInteraction>();
  const interactionStates = new Map<string, InteractionState>(); // by token
  const commands = { global: [] as APIApplicationCommand[], guild: [] as APIApplicationCommand[] };
  const commandPuts: CommandPut[] = [];
  const calls: RecordedCall[] = [];
  const buckets = new Map<string, Bucket>();
  const injections: Array<Required<Omit<RateLimitInjection, 'method'>> & { method?: string }> = [];
  let baseUrl = '';

  const botUser = buildUser({ username: options.botUsername ?? 'Guildgate', bot: true });
  users.set(botUser.id, botUser);
  const applicationId = botUser.id; // Apps created since 2020 share the bot user's id.
  const owner = buildUser({ username: 'server-owner' });
  users.set(owner.id, owner);
  const guildId = snowflake();
  const guildCreatedAt = new Date(Date.now() - 400 * 86_400_000).toISOString();
  const guildName = options.guildName ?? 'Guildgate Test Server';

  const everyoneRole = buildRole({
    id: guildId,
    name: '@everyone',
    position: 0,
    permissions: options.everyonePermissions ?? DEFAULT_EVERYONE_PERMISSIONS,
  });
  const memberRole = buildRole({ name: 'Member', position: 1, color: 0x2ecc71 });
  const moderatorRole = buildRole({ name: 'Moderator', position: 2, permissions: MODERATOR_PERMISSIONS, hoist: true });
  const botRole = buildRole({
    name: botUser.username,
    position: 3,
    permissions: options.botPermissions ?? DEFAULT_BOT_PERMISSIONS,
    managed: true,
    botId: botUser.id,
  });
  for (const r of [everyoneRole, memberRole, moderatorRole, botRole]) roles.set(r.id, r);

  const general = buildTextChannel(guildId, { name: 'general', position: 0, topic: 'General chat' });
  const viewSend = PermissionFlagsBits.ViewChannel | PermissionFlagsBits.SendMessages;
  const modLogOverwrites: APIOverwrite[] = [
    { id: guildId, type: OverwriteType.Role, allow: '0', deny: String(PermissionFlagsBits.ViewChannel) },
    { id: moderatorRole.id, type: OverwriteType.Role, allow: String(viewSend), deny: '0' },
    { id: botRole.id, type: OverwriteType.Role, allow: String(viewSend | PermissionFlagsBits.EmbedLinks), deny: '0' },
  ];
  const modLog = buildTextChannel(guildId, { name: 'mod-log', position: 1, overwrites: modLogOverwrites });
  channels.set(general.id, general);
  channels.set(modLog.id, modLog);

  const now = () => new Date().toISOString();
  const addMemberState = (user: APIUser, extra: Partial<MemberState> = {}): MemberState => {
    const m: MemberState = {
      user,
      roles: [],
      joined_at: now(),
      pending: false,
      nick: null,
      communication_disabled_until: null,
      premium_since: null,
      flags: 0,
      ...extra,
    };
    members.set(user.id, m);
    return m;
  };
  addMemberState(owner, { joined_at: guildCreatedAt, flags: 2 });
  addMemberState(botUser, { roles: [botRole.id], joined_at: new Date(Date.now() - 30 * 86_400_000).toISOString() });

  // --- Derived views ---------------------------------------------------------------------------

  const permissionsOf = (userId: string, channelId?: string): bigint => {
    const m = members.get(userId);
    if (!m) return 0n;
    const channel = channelId ? channels.get(channelId) : undefined;
    return computePermissions({
      ownerId: owner.id,
      guildId,
      roles,
      memberId: userId,
      memberRoles: m.roles,
      communicationDisabledUntil: m.communication_disabled_until,
      overwrites: channel ? (channel.permission_overwrites ?? []) : undefined,
    });
  };
  const botCan = (perm: bigint, channelId?: string) => (permissionsOf(botUser.id, channelId) & perm) === perm;
  const highestRolePosition = (userId: string): number => {
    if (userId === owner.id) return Number.POSITIVE_INFINITY;
    const m = members.get(userId);
    return Math.max(0, ...(m?.roles ?? []).map((r) => roles.get(r)?.position ?? 0));
  };

  const appFlags =
    ApplicationFlags.ApplicationCommandBadge |
    (membersIntentAllowed ? ApplicationFlags.GatewayGuildMembersLimited : 0) |
    (presenceIntentAllowed ? ApplicationFlags.GatewayPresenceLimited : 0) |
    (messageContentIntentAllowed ? ApplicationFlags.GatewayMessageContentLimited : 0);

  const guildJson = (withCounts = false): APIGuild & { approximate_member_count?: number } => ({
    id: guildId,
    name: guildName,
    icon: null,
    icon_hash: null,
    splash: null,
    discovery_splash: null,
    owner_id: owner.id,
    afk_channel_id: null,
    afk_timeout: 300,
    widget_enabled: false,
    widget_channel_id: null,
    verification_level: 1,
    default_message_notifications: 1,
    explicit_content_filter: 2,
    roles: [...roles.values()],
    emojis: [],
    features: [],
    mfa_level: 0,
    application_id: null,
    system_channel_id: general.id,
    system_channel_flags: 0 as GuildSystemChannelFlags,
    rules_channel_id: null,
    max_presences: null,
    max_members: 500000,
    vanity_url_code: null,
    description: null,
    banner: null,
    premium_tier: 0,
    premium_subscription_count: 0,
    preferred_locale: 'en-US' as Locale,
    public_updates_channel_id: null,
    max_video_channel_users: 25,
    max_stage_video_channel_users: 50,
    nsfw_level: 0,
    stickers: [],
    premium_progress_bar_enabled: false,
    hub_type: null,
    safety_alerts_channel_id: null,
    incidents_data: null,
    ...(withCounts ? { approximate_member_count: members.size, approximate_presence_count: 0 } : {}),
  });

  const guildCreate = (): GatewayGuildCreateDispatchData => {
    const botMember = members.get(botUser.id)!;
    return {
      ...guildJson(),
      joined_at: botMember.joined_at,
      large: false,
      unavailable: false,
      member_count: members.size,
      voice_states: [],
      // Without GUILD_PRESENCES Discord sends only the bot's own member here.
      members: [memberJson(botMember)],
      channels: [...channels.values()].map(({ guild_id: _omit, ...c }) => c as APITextChannel),
      threads: [],
      presences: [],
      stage_instances: [],
      guild_scheduled_events: [],
      soundboard_sounds: [],
    };
  };

  // --- Gateway ---------------------------------------------------------------------------------

  const gateway = new FakeGateway(
    {
      token,
      heartbeatIntervalMs: options.heartbeatIntervalMs ?? 41250,
      membersIntentAllowed,
      presenceIntentAllowed,
      messageContentIntentAllowed,
    },
    {
      ready: () => ({
        v: 10,
        user: { ...botUser, verified: true, mfa_enabled: false },
        guilds: [{ id: guildId, unavailable: true }],
        shard: [0, 1],
        application: { id: applicationId, flags: appFlags, flags_new: String(appFlags) },
      }),
      afterReady: (intents) =>
        (intents & GatewayIntentBits.Guilds) !== 0 ? [{ t: GatewayDispatchEvents.GuildCreate, d: guildCreate() }] : [],
      requestMembers: (d, intents) => {
        if (d.guild_id !== guildId) return { d: { guild_id: d.guild_id, members: [], chunk_index: 0, chunk_count: 0 } };
        const ids = d.user_ids === undefined ? undefined : Array.isArray(d.user_ids) ? d.user_ids : [d.user_ids];
        if (ids) {
          const found = ids.filter((id) => members.has(id));
          return {
            d: {
              guild_id: guildId,
              members: found.map((id) => memberJson(members.get(id)!)),
              chunk_index: 0,
              chunk_count: 1,
              not_found: ids.filter((id) => !members.has(id)),
              ...(d.nonce ? { nonce: d.nonce } : {}),
            },
          };
        }
        if ((intents & GatewayIntentBits.GuildMembers) === 0) return { close: 4013, reason: 'Invalid intent(s).' };
        const query = (d.query ?? '').toLowerCase();
        const limit = d.limit && d.limit > 0 ? d.limit : Number.POSITIVE_INFINITY;
        const list = [...members.values()]
          .filter((m) => m.user.username.toLowerCase().startsWith(query))
          .slice(0, limit)
          .map(memberJson);
        return {
          d: {
            guild_id: guildId,
            members: list,
            chunk_index: 0,
            chunk_count: 1,
            ...(d.nonce ? { nonce: d.nonce } : {}),
          },
        };
      },
    },
    changed,
  );

  // --- Test controls ---------------------------------------------------------------------------

  const requireUser = (userId: string): APIUser => {
    const user = users.get(userId);
    if (!user) throw new Error(`fake discord: unknown user ${userId} (createUser or addMember first)`);
    return user;
  };
  const requireMember = (userId: string): MemberState => {
    const m = members.get(userId);
    if (!m) throw new Error(`fake discord: ${userId} is not a member of the guild`);
    return m;
  };
  const checkRoles = (ids: string[]) => {
    for (const id of ids) {
      if (!roles.has(id) || id === guildId) throw new Error(`fake discord: unknown role ${id}`);
    }
  };

  const createUser = (input: UserInput = {}): APIUser => {
    const user = buildUser(input);
    users.set(user.id, user);
    return user;
  };

  const memberUpdateDispatch = (m: MemberState) => {
    gateway.dispatch(
      GatewayDispatchEvents.GuildMemberUpdate,
      { guild_id: guildId, ...memberJson(m) },
      GatewayIntentBits.GuildMembers,
    );
  };

  const removeMemberInternal = (userId: string) => {
    const m = members.get(userId)!;
    members.delete(userId);
    gateway.dispatch(
      GatewayDispatchEvents.GuildMemberRemove,
      { guild_id: guildId, user: m.user },
      GatewayIntentBits.GuildMembers,
    );
  };

  const banInternal = (userId: string, opts: BanOptions = {}) => {
    const user = requireUser(userId);
    const wasMember = members.has(userId);
    bans.set(userId, { user, reason: opts.reason ?? null });
    const ban = () =>
      gateway.dispatch(
        GatewayDispatchEvents.GuildBanAdd,
        { guild_id: guildId, user },
        GatewayIntentBits.GuildModeration,
      );
    if (wasMember && opts.order === 'remove-first') {
      removeMemberInternal(userId);
      ban();
    } else {
      ban();
      if (wasMember) removeMemberInternal(userId);
    }
    changed();
  };

  const addMember = (input: MemberInput = {}): MemberState => {
    const user = input.userId ? requireUser(input.userId) : createUser(input.user);
    if (members.has(user.id)) throw new Error(`fake discord: ${user.id} is already a member`);
    if (bans.has(user.id)) throw new Error(`fake discord: ${user.id} is banned and cannot join`);
    const roleIds = input.roles ?? [];
    checkRoles(roleIds);
    const m = addMemberState(user, {
      roles: [...roleIds],
      pending: input.pending ?? false,
      nick: input.nick ?? null,
      joined_at: (input.joinedAt ?? new Date()).toISOString(),
      communication_disabled_until: input.communicationDisabledUntil?.toISOString() ?? null,
    });
    gateway.dispatch(
      GatewayDispatchEvents.GuildMemberAdd,
      { guild_id: guildId, ...memberJson(m) },
      GatewayIntentBits.GuildMembers,
    );
    changed();
    return m;
  };

  const updateMember = (userId: string, update: MemberUpdate): MemberState => {
    const m = requireMember(userId);
    if (update.roles) {
      checkRoles(update.roles);
      m.roles = [...update.roles];
    }
    if (update.pending !== undefined) m.pending = update.pending;
    if (update.nick !== undefined) m.nick = update.nick;
    if (update.communicationDisabledUntil !== undefined)
      m.communication_disabled_until = update.communicationDisabledUntil?.toISOString() ?? null;
    memberUpdateDispatch(m);
    changed();
    return m;
  };

  const addRole = (input: RoleInput): APIRole => {
    const role = buildRole({ position: Math.max(...[...roles.values()].map((r) => r.position)), ...input });
    roles.set(role.id, role);
    gateway.dispatch(GatewayDispatchEvents.GuildRoleCreate, { guild_id: guildId, role }, GatewayIntentBits.Guilds);
    changed();
    return role;
  };

  const addChannel = (input: TextChannelInput): APITextChannel => {
    const channel = buildTextChannel(guildId, { position: channels.size, ...input });
    channels.set(channel.id, channel);
    gateway.dispatch(GatewayDispatchEvents.ChannelCreate, channel, GatewayIntentBits.Guilds);
    changed();
    return channel;
  };

  const waitFor = <T>(check: () => T | undefined | null | false, timeoutMs = 5000, what = 'condition') =>
    new Promise<T>((resolve, reject) => {
      const evaluate = (): boolean => {
        const value = check();
        if (value === undefined || value === null || value === false) return false;
        cleanup();
        resolve(value);
        return true;
      };
      const onChange = () => {
        try {
          evaluate();
        } catch (err) {
          cleanup();
          reject(err);
        }
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`fake discord: timed out after ${timeoutMs} ms waiting for ${what}`));
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        changes.off('change', onChange);
      };
      changes.on('change', onChange);
      onChange();
    });

  // --- Interactions ----------------------------------------------------------------------------

  const dmChannelFor = (user: APIUser): APIDMChannel => {
    let channel = dmChannels.get(user.id);
    if (!channel) {
      channel = buildDmChannel(user);
      dmChannels.set(user.id, channel);
    }
    return channel;
  };

  const findCommand = (type: ApplicationCommandType, name: string, dm: boolean): APIApplicationCommand => {
    const usable = (c: APIApplicationCommand, scope: 'global' | 'guild') => {
      if (c.type !== type || c.name !== name) return false;
      if (scope === 'guild') return !dm;
      const contexts = c.contexts ?? null;
      if (dm) return contexts ? contexts.includes(1) : c.dm_permission !== false;
      return contexts ? contexts.includes(0) : true;
    };
    const found =
      (dm ? undefined : commands.guild.find((c) => usable(c, 'guild'))) ??
      commands.global.find((c) => usable(c, 'global'));
    if (!found) {
      throw new Error(
        `fake discord: no registered ${ApplicationCommandType[type]} command "${name}" usable ${dm ? 'in a DM' : 'in the guild'}; Discord would not offer it (register it with PUT .../commands first)`,
      );
    }
    return found;
  };

  const resolvedMember = (userId: string, channelId: string | null): APIInteractionDataResolvedGuildMember | null => {
    const m = members.get(userId);
    if (!m) return null;
    const { user: _user, deaf: _deaf, mute: _mute, ...rest } = memberJson(m);
    return { ...rest, permissions: String(permissionsOf(userId, channelId ?? undefined)) };
  };

  const buildOptions = (
    command: APIApplicationCommand,
    input: Extract<InteractInput, { type: 'chat-input' }>,
    resolved: APIInteractionDataResolved,
    channelId: string | null,
    dm: boolean,
  ): APIApplicationCommandInteractionDataOption[] | undefined => {
    const defs = command.options ?? [];
    let level: readonly APIApplicationCommandOption[] = defs;
    const wrap: Array<
      (inner: APIApplicationCommandInteractionDataOption[]) => APIApplicationCommandInteractionDataOption
    > = [];
    const hasSubs = defs.some(
      (o) =>
        o.type === ApplicationCommandOptionType.Subcommand || o.type === ApplicationCommandOptionType.SubcommandGroup,
    );
    if (input.subcommandGroup) {
      const group = defs.find(
        (o) => o.type === ApplicationCommandOptionType.SubcommandGroup && o.name === input.subcommandGroup,
      );
      if (!group || group.type !== ApplicationCommandOptionType.SubcommandGroup)
        throw new Error(`fake discord: /${command.name} has no subcommand group "${input.subcommandGroup}"`);
      level = group.options ?? [];
      wrap.push((inner) => ({
        type: ApplicationCommandOptionType.SubcommandGroup,
        name: group.name,
        options: inner as never,
      }));
    }
    if (input.subcommand) {
      const sub = level.find((o) => o.type === ApplicationCommandOptionType.Subcommand && o.name === input.subcommand);
      if (!sub || sub.type !== ApplicationCommandOptionType.Subcommand)
        throw new Error(`fake discord: /${command.name} has no subcommand "${input.subcommand}"`);
      level = sub.options ?? [];
      wrap.push((inner) => ({
        type: ApplicationCommandOptionType.Subcommand,
        name: sub.name,
        options: inner as never,
      }));
    } else if (hasSubs) {
      throw new Error(`fake discord: /${command.name} needs a subcommand`);
    }

    const leaves: APIApplicationCommandInteractionDataOption[] = [];
    const given = input.options ?? {};
    for (const def of level) {
      if ('required' in def && def.required && !(def.name in given))
        throw new Error(`fake discord: /${command.name} option "${def.name}" is required`);
    }
    for (const [name, value] of Object.entries(given)) {
      const def = level.find((o) => o.name === name);
      if (!def) throw new Error(`fake discord: /${command.name} has no option "${name}"`);
      if ('choices' in def && def.choices && !def.choices.some((c) => c.value === value))
        throw new Error(`fake discord: ${String(value)} is not a choice of option "${name}"`);
      switch (def.type) {
        case ApplicationCommandOptionType.String:
          if (typeof value !== 'string') throw new Error(`fake discord: option "${name}" takes a string`);
          if (
            (def.min_length !== undefined && value.length < def.min_length) ||
            value.length > (def.max_length ?? 6000)
          )
            throw new Error(`fake discord: option "${name}" has the wrong length`);
          leaves.push({ type: def.type, name, value });
          break;
        case ApplicationCommandOptionType.Integer:
        case ApplicationCommandOptionType.Number:
          if (
            typeof value !== 'number' ||
            (def.type === ApplicationCommandOptionType.Integer && !Number.isInteger(value))
          )
            throw new Error(`fake discord: option "${name}" takes a number`);
          if (
            (def.min_value !== undefined && value < def.min_value) ||
            (def.max_value !== undefined && value > def.max_value)
          )
            throw new Error(`fake discord: option "${name}" is out of range`);
          leaves.push({ type: def.type, name, value });
          break;
        case ApplicationCommandOptionType.Boolean:
          if (typeof value !== 'boolean') throw new Error(`fake discord: option "${name}" takes a boolean`);
          leaves.push({ type: def.type, name, value });
          break;
        case ApplicationCommandOptionType.User:
        case ApplicationCommandOptionType.Mentionable: {
          const id = String(value);
          const user = users.get(id);
          const role = roles.get(id);
          if (user) {
            resolved.users = { ...resolved.users, [id]: user };
            const m = dm ? null : resolvedMember(id, channelId);
            if (m) resolved.members = { ...resolved.members, [id]: m };
          } else if (role && def.type === ApplicationCommandOptionType.Mentionable && !dm) {
            resolved.roles = { ...resolved.roles, [id]: role };
          } else {
            throw new Error(`fake discord: option "${name}": unknown ${ApplicationCommandOptionType[def.type]} ${id}`);
          }
          leaves.push({ type: def.type, name, value: id });
          break;
        }
        case ApplicationCommandOptionType.Role: {
          const id = String(value);
          const role = roles.get(id);
          if (!role || dm) throw new Error(`fake discord: option "${name}": unknown role ${id}`);
          resolved.roles = { ...resolved.roles, [id]: role };
          leaves.push({ type: def.type, name, value: id });
          break;
        }
        case ApplicationCommandOptionType.Channel: {
          const id = String(value);
          const channel = channels.get(id);
          if (!channel || dm) throw new Error(`fake discord: option "${name}": unknown channel ${id}`);
          resolved.channels = {
            ...resolved.channels,
            [id]: {
              id,
              name: channel.name,
              type: channel.type,
              permissions: String(permissionsOf(input.userId, id)),
            } as never,
          };
          leaves.push({ type: def.type, name, value: id });
          break;
        }
        default:
          throw new Error(`fake discord: option type ${def.type} is not supported by the fake`);
      }
    }
    let result = leaves;
    for (const w of wrap.reverse()) result = [w(result)];
    return result.length > 0 ? result : undefined;
  };

  const interact = (input: InteractInput): InteractionHandle => {
    const user = requireUser(input.userId);
    let dm = input.dm === true;
    let channelId = dm ? dmChannelFor(user).id : (input.channelId ?? general.id);
    let componentMessage: StoredMessage | null = null;

    if (input.type === 'button') {
      componentMessage = input.messageId ? (allMessages.get(input.messageId) ?? null) : null;
      if (!componentMessage && !input.messageId) {
        componentMessage =
          [...allMessages.values()]
            .reverse()
            .find(
              (s) => !s.deleted && hasButton(s.message, input.customId) && (!s.visibleTo || s.visibleTo === user.id),
            ) ?? null;
      }
      if (!componentMessage || componentMessage.deleted)
        throw new Error(`fake discord: no message carrying a button "${input.customId}"`);
      if (!hasButton(componentMessage.message, input.customId))
        throw new Error(
          `fake discord: message ${componentMessage.message.id} has no enabled button "${input.customId}"`,
        );
      if (componentMessage.visibleTo && componentMessage.visibleTo !== user.id)
        throw new Error('fake discord: only the invoker can see (and press) an ephemeral message');
      channelId = componentMessage.channelId;
      dm = !channels.has(channelId);
    }

    let member: MemberState | undefined;
    if (!dm) {
      if (!channels.has(channelId)) throw new Error(`fake discord: unknown guild channel ${channelId}`);
      member = members.get(user.id);
      if (!member) throw new Error(`fake discord: ${user.id} is not a member, so cannot interact in the guild`);
      if ((permissionsOf(user.id, channelId) & PermissionFlagsBits.ViewChannel) === 0n)
        throw new Error(`fake discord: ${user.id} cannot see channel ${channelId}`);
    } else if (!members.has(user.id) && input.type !== 'button') {
      // A guild-installed bot can only be reached in DMs by users who share a server with it.
      throw new Error(`fake discord: ${user.id} shares no server with the bot, so cannot open its DM`);
    }

    const id = snowflake();
    const interactionToken = Buffer.from(
      `interaction:${id}:${Math.random().toString(36).slice(2)}${Math.random().toString(36).slice(2)}`,
    ).toString('base64url');
    let data: unknown;
    let name: string;
    let type: InteractionType;
    if (input.type === 'chat-input' || input.type === 'user-command') {
      type = InteractionType.ApplicationCommand;
      const commandType = input.type === 'chat-input' ? ApplicationCommandType.ChatInput : ApplicationCommandType.User;
      const command = findCommand(commandType, input.name, dm);
      name = command.name;
      if (!dm) {
        const perms = permissionsOf(user.id, channelId);
        const admin = (perms & PermissionFlagsBits.Administrator) !== 0n;
        if ((perms & PermissionFlagsBits.UseApplicationCommands) === 0n && !admin)
          throw new Error(`fake discord: ${user.id} lacks Use Application Commands in ${channelId}`);
        const required = command.default_member_permissions;
        const guildPerms = permissionsOf(user.id);
        if (required !== null && required !== undefined && !input.bypassCommandPermissions && !admin) {
          const need = BigInt(required);
          if (need === 0n || (guildPerms & need) !== need)
            throw new Error(
              `fake discord: /${command.name} needs permissions ${required}; Discord would hide it from ${user.id} (pass bypassCommandPermissions to simulate an admin override)`,
            );
        }
      }
      const resolved: APIInteractionDataResolved = {};
      if (input.type === 'chat-input') {
        const opts = buildOptions(command, input, resolved, dm ? null : channelId, dm);
        data = {
          id: command.id,
          name: command.name,
          type: ApplicationCommandType.ChatInput,
          ...(opts ? { options: opts } : {}),
          ...(Object.keys(resolved).length > 0 ? { resolved } : {}),
          ...(command.guild_id ? { guild_id: command.guild_id } : {}),
        };
      } else {
        const target = requireUser(input.targetId);
        const m = dm ? null : resolvedMember(target.id, channelId);
        data = {
          id: command.id,
          name: command.name,
          type: ApplicationCommandType.User,
          target_id: target.id,
          resolved: { users: { [target.id]: target }, ...(m ? { members: { [target.id]: m } } : {}) },
          ...(command.guild_id ? { guild_id: command.guild_id } : {}),
        };
      }
    } else {
      type = InteractionType.MessageComponent;
      name = input.customId;
      data = { custom_id: input.customId, component_type: ComponentType.Button };
    }

    const locale = (input.locale ?? 'en-US') as Locale;
    const base = {
      id,
      application_id: applicationId,
      type,
      data,
      token: interactionToken,
      version: 1,
      locale,
      entitlements: [],
      attachment_size_limit: ATTACHMENT_SIZE_LIMIT,
      ...(componentMessage ? { message: componentMessage.message } : {}),
    };
    let payload: APIInteraction;
    if (dm) {
      const channel = dmChannelFor(user);
      payload = {
        ...base,
        user,
        channel: { id: channel.id, type: ChannelType.DM, last_message_id: null, flags: 0, recipients: [user] },
        channel_id: channel.id,
        app_permissions: String(DM_APP_PERMISSIONS),
        authorizing_integration_owners: { '0': '0' },
        context: 1,
      } as unknown as APIInteraction;
    } else {
      const channel = channels.get(channelId)!;
      const interactionMember: APIInteractionGuildMember = {
        ...memberJson(member!),
        permissions: String(permissionsOf(user.id, channelId)),
      };
      const { permission_overwrites: _o, ...channelPartial } = channel;
      payload = {
        ...base,
        guild_id: guildId,
        guild: { id: guildId, locale: 'en-US', features: [] },
        guild_locale: 'en-US',
        member: interactionMember,
        channel: { ...channelPartial, permissions: String(permissionsOf(user.id, channelId)) },
        channel_id: channelId,
        app_permissions: String(permissionsOf(botUser.id, channelId)),
        authorizing_integration_owners: { '0': guildId },
        context: 0,
      } as unknown as APIInteraction;
    }

    const record: RecordedInteraction = {
      id,
      token: interactionToken,
      kind: input.type,
      name,
      userId: user.id,
      guildId: dm ? null : guildId,
      channelId,
      dispatchedAt: Date.now(),
      deliveredTo: 0,
      payload,
      response: null,
      ephemeral: null,
      edits: [],
      followUps: [],
      original: null,
      originalDeleted: false,
      refused: [],
    };
    interactions.set(id, record);
    interactionStates.set(interactionToken, {
      record,
      componentMessageId: componentMessage?.message.id ?? null,
      followUpIds: new Set(),
      loading: false,
    });
    record.dispatchedAt = Date.now();
    record.deliveredTo = gateway.dispatch(GatewayDispatchEvents.InteractionCreate, payload);
    changed();

    return {
      id,
      token: interactionToken,
      payload,
      record,
      response: (timeoutMs = 5000) =>
        waitFor(() => record.response, timeoutMs, `the first response to interaction ${name}`),
      edits: (n = 1, timeoutMs = 5000) =>
        waitFor(() => (record.edits.length >= n ? record.edits : null), timeoutMs, `${n} edit(s) of ${name}`),
      followUps: (n = 1, timeoutMs = 5000) =>
        waitFor(
          () => (record.followUps.length >= n ? record.followUps : null),
          timeoutMs,
          `${n} follow-up(s) of ${name}`,
        ),
    };
  };

  // --- REST: helpers ---------------------------------------------------------------------------

  const requireGuild = (id: string) => {
    if (id !== guildId) throw E.unknownGuild();
  };
  const requireApp = (id: string) => {
    if (id !== applicationId)
      throw new DiscordHttpError(403, {
        message: 'You are not authorized to perform this action on this application',
        code: 20012,
      });
  };

  const storeMessage = (message: APIMessage, channelId: string, visibleTo: string | null) => {
    allMessages.set(message.id, { message, channelId, ephemeral: visibleTo !== null, visibleTo, deleted: false });
  };

  const applyEdit = (message: APIMessage, body: MessageBody & Record<string, unknown>, files: StoredFile[]) => {
    if (body.content !== undefined) message.content = (body.content as string | null) ?? '';
    if (body.embeds !== undefined) message.embeds = (body.embeds as APIEmbed[] | null) ?? [];
    if (body.components !== undefined)
      message.components = (body.components as APIMessageTopLevelComponent[] | null) ?? [];
    if (body.attachments !== undefined || files.length > 0) {
      const keep = Array.isArray(body.attachments)
        ? message.attachments.filter((a) =>
            (body.attachments as Array<{ id?: unknown }>).some((k) => String(k.id) === a.id),
          )
        : message.attachments;
      message.attachments = [...keep, ...buildAttachments(files, message.channel_id, baseUrl)];
    }
    message.edited_timestamp = now();
  };

  const messageBodyFrom = (body: unknown): MessageBody & Record<string, unknown> => {
    if (body === undefined || body === null) return {};
    if (typeof body !== 'object' || Array.isArray(body))
      throw fieldError('_errors', 'DICT_TYPE_CONVERT', 'Only dictionaries may be used in a DictType');
    return body as MessageBody & Record<string, unknown>;
  };

  const interactionMessageType = (record: RecordedInteraction): MessageType =>
    record.kind === 'chat-input'
      ? MessageType.ChatInputCommand
      : record.kind === 'user-command'
        ? MessageType.ContextMenuCommand
        : MessageType.Default;

  const newInteractionMessage = (
    st: InteractionState,
    body: MessageBody & Record<string, unknown>,
    files: StoredFile[],
    flags: number,
  ): APIMessage => {
    const record = st.record;
    const message = buildMessage({
      channelId: record.channelId,
      ...(record.guildId ? { guildId: record.guildId } : {}),
      author: botUser,
      content: typeof body.content === 'string' ? body.content : '',
      embeds: (body.embeds as APIEmbed[] | undefined) ?? [],
      components: (body.components as APIMessageTopLevelComponent[] | undefined) ?? [],
      flags,
      type: interactionMessageType(record),
      files,
      attachmentBase: baseUrl,
      webhookId: applicationId,
      applicationId,
    });
    message.interaction_metadata = {
      id: record.id,
      type: record.payload.type,
      user: users.get(record.userId)!,
      authorizing_integration_owners: record.payload.authorizing_integration_owners,
    } as never;
    storeMessage(message, record.channelId, flags & MessageFlags.Ephemeral ? record.userId : null);
    return message;
  };

  // --- REST: route handlers ----------------------------------------------------------------------

  const interactionCallback = (ctx: RouteContext): RouteResult => {
    const st = interactionStates.get(ctx.params.token!);
    const record = st?.record;
    const refuse = (err: DiscordHttpError): never => {
      record?.refused.push({
        route: 'callback',
        method: ctx.method,
        status: err.status,
        code: err.body.code,
        at: Date.now(),
      });
      throw err;
    };
    if (!st || !record || record.id !== ctx.params.interaction) return refuse(E.unknownInteraction());
    if (record.response) return refuse(E.alreadyAcknowledged());
    const at = Date.now();
    if (at - record.dispatchedAt > responseWindowMs) return refuse(E.unknownInteraction());

    const body = messageBodyFrom(ctx.body) as { type?: unknown; data?: unknown };
    const type = body.type;
    const allowed =
      record.kind === 'button'
        ? [
            InteractionResponseType.ChannelMessageWithSource,
            InteractionResponseType.DeferredChannelMessageWithSource,
            InteractionResponseType.DeferredMessageUpdate,
            InteractionResponseType.UpdateMessage,
            InteractionResponseType.Modal,
          ]
        : [
            InteractionResponseType.ChannelMessageWithSource,
            InteractionResponseType.DeferredChannelMessageWithSource,
            InteractionResponseType.Modal,
          ];
    if (typeof type !== 'number' || !allowed.includes(type))
      return refuse(fieldError('type', 'INTERACTION_RESPONSE_TYPE_INVALID', 'Interaction response type is invalid'));
    const data = body.data === undefined || body.data === null ? {} : messageBodyFrom(body.data);
    const flags = typeof data.flags === 'number' ? data.flags : 0;

    let original: APIMessage | null = null;
    let ephemeral = false;
    try {
      switch (type) {
        case InteractionResponseType.ChannelMessageWithSource:
          validateMessageBody(data, false, ctx.files.length);
          ephemeral = (flags & MessageFlags.Ephemeral) !== 0;
          original = newInteractionMessage(
            st,
            data,
            ctx.files,
            flags & (MessageFlags.Ephemeral | MessageFlags.SuppressEmbeds),
          );
          break;
        case InteractionResponseType.DeferredChannelMessageWithSource:
          ephemeral = (flags & MessageFlags.Ephemeral) !== 0;
          original = newInteractionMessage(st, {}, [], (flags & MessageFlags.Ephemeral) | MessageFlags.Loading);
          st.loading = true;
          break;
        case InteractionResponseType.DeferredMessageUpdate:
        case InteractionResponseType.UpdateMessage: {
          const stored = allMessages.get(st.componentMessageId!)!;
          ephemeral = stored.ephemeral;
          if (type === InteractionResponseType.UpdateMessage) {
            validateMessageBody(data, true, ctx.files.length);
            const merged = { ...stored.message, ...data } as MessageBody;
            if (isEmptyMessage(merged, ctx.files.length + stored.message.attachments.length)) throw E.emptyMessage();
            applyEdit(stored.message, data, ctx.files);
          }
          original = stored.message;
          break;
        }
        case InteractionResponseType.Modal: {
          const modal = data as { custom_id?: unknown; title?: unknown; components?: unknown };
          if (typeof modal.custom_id !== 'string' || modal.custom_id.length > 100)
            throw fieldError('data.custom_id', 'BASE_TYPE_REQUIRED', 'This field is required');
          if (typeof modal.title !== 'string' || modal.title.length > 45)
            throw fieldError('data.title', 'BASE_TYPE_REQUIRED', 'This field is required');
          if (!Array.isArray(modal.components) || modal.components.length < 1 || modal.components.length > 5)
            throw fieldError('data.components', 'BASE_TYPE_BAD_LENGTH', 'Must be between 1 and 5 in length.');
          break;
        }
      }
    } catch (err) {
      if (err instanceof DiscordHttpError) return refuse(err);
      throw err;
    }

    const files = toRecordedFiles(ctx.files);
    record.response = {
      type,
      flags,
      ephemeral,
      data: body.data === undefined || body.data === null ? null : data,
      content: typeof data.content === 'string' ? data.content : null,
      embeds: (data.embeds as APIEmbed[] | undefined) ?? [],
      components: (data.components as APIMessageTopLevelComponent[] | undefined) ?? [],
      files,
      at,
      delayMs: at - record.dispatchedAt,
    };
    record.ephemeral = ephemeral;
    record.original = original;
    if (ctx.query.get('with_response') === 'true') {
      return {
        status: 200,
        body: {
          interaction: {
            id: record.id,
            type: record.payload.type,
            activity_instance_id: null,
            response_message_id: original?.id ?? null,
            response_message_loading: type === InteractionResponseType.DeferredChannelMessageWithSource,
            response_message_ephemeral: ephemeral,
          },
          resource: original ? { type, message: original } : { type },
        },
      };
    }
    return { status: 204 };
  };

  /** The interaction behind a webhook route, or the error Discord gives. */
  const webhookInteraction = (ctx: RouteContext): InteractionState => {
    const st = interactionStates.get(ctx.params.token!);
    const refuse = (err: DiscordHttpError): never => {
      st?.record.refused.push({
        route: 'webhook',
        method: ctx.method,
        status: err.status,
        code: err.body.code,
        at: Date.now(),
      });
      throw err;
    };
    if (ctx.params.app !== applicationId) return refuse(E.unknownWebhook());
    if (!st) return refuse(E.invalidWebhookToken());
    if (Date.now() - st.record.dispatchedAt > tokenTtlMs) return refuse(E.invalidWebhookToken());
    if (!st.record.response) return refuse(E.unknownWebhook());
    return st;
  };

  const webhookMessage = (st: InteractionState, id: string): APIMessage => {
    const record = st.record;
    if (id === '@original') {
      if (!record.original || record.originalDeleted) throw E.unknownMessage();
      return record.original;
    }
    if (!isSnowflake(id)) throw fieldError('message_id', 'NUMBER_TYPE_COERCE', `Value "${id}" is not snowflake.`);
    const stored = allMessages.get(id);
    if (!stored || stored.deleted || (!st.followUpIds.has(id) && record.original?.id !== id)) throw E.unknownMessage();
    return stored.message;
  };

  const editWebhookMessage = (ctx: RouteContext): RouteResult => {
    const st = webhookInteraction(ctx);
    const record = st.record;
    const message = webhookMessage(st, ctx.params.message!);
    const body = messageBodyFrom(ctx.body);
    validateMessageBody(body, true, ctx.files.length);
    const merged = { ...message, ...body } as MessageBody;
    const keptAttachments = Array.isArray(body.attachments) ? body.attachments.length : message.attachments.length;
    if (isEmptyMessage(merged, ctx.files.length + keptAttachments)) throw E.emptyMessage();
    applyEdit(message, body, ctx.files);
    if (message.id === record.original?.id && st.loading) {
      st.loading = false;
      message.flags = (message.flags ?? 0) & ~MessageFlags.Loading;
    }
    record.edits.push({
      target: ctx.params.message === '@original' ? '@original' : message.id,
      data: body,
      content: typeof body.content === 'string' ? body.content : null,
      embeds: (body.embeds as APIEmbed[] | undefined) ?? null,
      components: (body.components as APIMessageTopLevelComponent[] | undefined) ?? null,
      files: toRecordedFiles(ctx.files),
      at: Date.now(),
    });
    return { status: 200, body: message };
  };

  const followUp = (ctx: RouteContext): RouteResult => {
    const st = webhookInteraction(ctx);
    const record = st.record;
    const body = messageBodyFrom(ctx.body);
    validateMessageBody(body, false, ctx.files.length);
    const flags = typeof body.flags === 'number' ? body.flags : 0;
    let message: APIMessage;
    let replacedDeferral = false;
    let ephemeral: boolean;
    if (st.loading && record.original && !record.originalDeleted) {
      // The first follow-up after a deferred reply replaces the "thinking" message and keeps its
      // ephemerality, whatever the follow-up's flags say.
      message = record.original;
      applyEdit(message, body, ctx.files);
      message.flags = (message.flags ?? 0) & ~MessageFlags.Loading;
      st.loading = false;
      replacedDeferral = true;
      ephemeral = record.ephemeral === true;
    } else {
      ephemeral = (flags & MessageFlags.Ephemeral) !== 0;
      message = newInteractionMessage(
        st,
        body,
        ctx.files,
        flags & (MessageFlags.Ephemeral | MessageFlags.SuppressEmbeds),
      );
      st.followUpIds.add(message.id);
    }
    record.followUps.push({
      messageId: message.id,
      data: body,
      content: typeof body.content === 'string' ? body.content : null,
      flags,
      ephemeral,
      replacedDeferral,
      files: toRecordedFiles(ctx.files),
      at: Date.now(),
    });
    return ctx.query.get('wait') === 'true' ? { status: 200, body: message } : { status: 204 };
  };

  const deleteWebhookMessage = (ctx: RouteContext): RouteResult => {
    const st = webhookInteraction(ctx);
    const message = webhookMessage(st, ctx.params.message!);
    const stored = allMessages.get(message.id);
    if (stored) stored.deleted = true;
    if (message.id === st.record.original?.id) {
      st.record.originalDeleted = true;
      st.loading = false;
    }
    return { status: 204 };
  };

  const channelFor = (channelId: string): { guild: APITextChannel | null; dm: APIDMChannel | null } => {
    const guildChannel = channels.get(channelId);
    if (guildChannel) {
      if (!botCan(PermissionFlagsBits.ViewChannel, channelId)) throw E.missingAccess();
      return { guild: guildChannel, dm: null };
    }
    const dmChannel = [...dmChannels.values()].find((c) => c.id === channelId);
    if (dmChannel) return { guild: null, dm: dmChannel };
    throw E.unknownChannel();
  };

  const postMessage = (ctx: RouteContext): RouteResult => {
    const channelId = ctx.params.channel!;
    const { guild, dm } = channelFor(channelId);
    const body = messageBodyFrom(ctx.body);
    if (guild) {
      if (!botCan(PermissionFlagsBits.SendMessages, channelId)) throw E.missingPermissions();
      if (ctx.files.length > 0 && !botCan(PermissionFlagsBits.AttachFiles, channelId)) throw E.missingPermissions();
    }
    let recipient: APIUser | null = null;
    if (dm) {
      recipient = dm.recipients![0]!;
      // No shared server, DMs closed for server members, or a bot on the other side: 50007.
      if (dmsClosed.has(recipient.id) || !members.has(recipient.id) || recipient.bot) throw E.cannotDm();
    }
    validateMessageBody(body, false, ctx.files.length);
    const flags = typeof body.flags === 'number' ? body.flags : 0;
    // Without Embed Links Discord drops the embeds silently.
    const embedsAllowed = !guild || botCan(PermissionFlagsBits.EmbedLinks, channelId);
    const message = buildMessage({
      channelId,
      ...(guild ? { guildId } : {}),
      author: botUser,
      content: typeof body.content === 'string' ? body.content : '',
      embeds: embedsAllowed ? ((body.embeds as APIEmbed[] | undefined) ?? []) : [],
      components: (body.components as APIMessageTopLevelComponent[] | undefined) ?? [],
      flags: flags & (MessageFlags.SuppressEmbeds | MessageFlags.SuppressNotifications),
      files: ctx.files,
      attachmentBase: baseUrl,
    });
    storeMessage(message, channelId, null);
    const list = messages.get(channelId) ?? [];
    list.push(message);
    messages.set(channelId, list);
    if (recipient) {
      const dmList = dms.get(recipient.id) ?? [];
      dmList.push(message);
      dms.set(recipient.id, dmList);
    }
    if (guild) guild.last_message_id = message.id;
    if (dm) dm.last_message_id = message.id;
    return { status: 200, body: message };
  };

  const channelMessage = (ctx: RouteContext): StoredMessage => {
    channelFor(ctx.params.channel!);
    const id = ctx.params.message!;
    if (!isSnowflake(id)) throw fieldError('message_id', 'NUMBER_TYPE_COERCE', `Value "${id}" is not snowflake.`);
    const stored = allMessages.get(id);
    if (!stored || stored.deleted || stored.ephemeral || stored.channelId !== ctx.params.channel)
      throw E.unknownMessage();
    return stored;
  };

  const putCommands = (scope: 'global' | 'guild', ctx: RouteContext): RouteResult => {
    requireApp(ctx.params.app!);
    if (scope === 'guild') requireGuild(ctx.params.guild!);
    if (!Array.isArray(ctx.body)) throw fieldError('_errors', 'BASE_TYPE_LIST', 'Must be a list.');
    const list = scope === 'global' ? commands.global : commands.guild;
    const next = (ctx.body as unknown[]).map((raw, i) => normalizeCommand(raw, i, scope, list));
    const seen = new Set<string>();
    for (const [i, c] of next.entries()) {
      const key = `${c.type}:${c.name}`;
      if (seen.has(key))
        throw fieldError(String(i), 'APPLICATION_COMMANDS_DUPLICATE_NAME', `Application command names must be unique`);
      seen.add(key);
    }
    if (next.filter((c) => c.type === ApplicationCommandType.ChatInput).length > 100)
      throw fieldError('_errors', 'BASE_TYPE_MAX_LENGTH', 'Must be 100 or fewer in length.');
    list.length = 0;
    list.push(...next);
    commandPuts.push({ scope, guildId: scope === 'guild' ? ctx.params.guild! : null, body: ctx.body, at: Date.now() });
    return { status: 200, body: next };
  };

  const postCommand = (scope: 'global' | 'guild', ctx: RouteContext): RouteResult => {
    requireApp(ctx.params.app!);
    if (scope === 'guild') requireGuild(ctx.params.guild!);
    const list = scope === 'global' ? commands.global : commands.guild;
    const command = normalizeCommand(ctx.body, null, scope, list);
    const index = list.findIndex((c) => c.type === command.type && c.name === command.name);
    if (index >= 0) {
      list[index] = command;
      return { status: 200, body: command };
    }
    list.push(command);
    return { status: 201, body: command };
  };

  const normalizeCommand = (
    raw: unknown,
    index: number | null,
    scope: 'global' | 'guild',
    existing: APIApplicationCommand[],
  ): APIApplicationCommand => {
    const at = (field: string) => (index === null ? field : `${index}.${field}`);
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
      throw fieldError(
        index === null ? '_errors' : String(index),
        'DICT_TYPE_CONVERT',
        'Only dictionaries may be used',
      );
    const c = raw as Record<string, unknown>;
    const type = (c.type as number | undefined) ?? ApplicationCommandType.ChatInput;
    if (![1, 2, 3].includes(type)) throw fieldError(at('type'), 'BASE_TYPE_CHOICES', 'Value must be one of (1, 2, 3).');
    const name = c.name;
    if (typeof name !== 'string') throw fieldError(at('name'), 'BASE_TYPE_REQUIRED', 'This field is required');
    if (type === ApplicationCommandType.ChatInput) {
      if (!/^[-_'\p{L}\p{N}\p{sc=Deva}\p{sc=Thai}]{1,32}$/u.test(name) || name !== name.toLowerCase())
        throw fieldError(at('name'), 'APPLICATION_COMMAND_INVALID_NAME', 'Command name is invalid');
      if (typeof c.description !== 'string' || c.description.length < 1 || c.description.length > 100)
        throw fieldError(at('description'), 'BASE_TYPE_BAD_LENGTH', 'Must be between 1 and 100 in length.');
    } else {
      if (name.length < 1 || name.length > 32)
        throw fieldError(at('name'), 'BASE_TYPE_BAD_LENGTH', 'Must be between 1 and 32 in length.');
      if (c.description !== undefined && c.description !== '' && c.description !== null)
        throw fieldError(
          at('description'),
          'APPLICATION_COMMAND_CONTEXT_MENU_DESCRIPTION',
          'Context menu commands cannot have description',
        );
      if (c.options !== undefined && c.options !== null && (c.options as unknown[]).length > 0)
        throw fieldError(
          at('options'),
          'APPLICATION_COMMAND_CONTEXT_MENU_OPTIONS',
          'Context menu commands cannot have options',
        );
    }
    if (c.options !== undefined && c.options !== null) validateOptions(c.options, at('options'), 0);
    const dmp = c.default_member_permissions;
    if (dmp !== undefined && dmp !== null && (typeof dmp !== 'string' || !/^\d+$/.test(dmp)))
      throw fieldError(at('default_member_permissions'), 'NUMBER_TYPE_COERCE', 'Value is not a valid permission set.');
    const previous = existing.find((e) => e.type === type && e.name === name);
    const id = (typeof c.id === 'string' ? c.id : undefined) ?? previous?.id ?? snowflake();
    const result: APIApplicationCommand = {
      id,
      application_id: applicationId,
      version: snowflake(),
      type,
      name,
      name_localizations: (c.name_localizations as APIApplicationCommand['name_localizations']) ?? null,
      description: type === ApplicationCommandType.ChatInput ? (c.description as string) : '',
      description_localizations:
        (c.description_localizations as APIApplicationCommand['description_localizations']) ?? null,
      default_member_permissions: (dmp as string | null | undefined) ?? null,
      nsfw: c.nsfw === true,
      ...(scope === 'guild' ? { guild_id: guildId } : {}),
      ...(Array.isArray(c.options) && c.options.length > 0
        ? { options: c.options as APIApplicationCommandOption[] }
        : {}),
      ...(scope === 'global'
        ? {
            dm_permission: c.dm_permission !== false,
            contexts: (c.contexts as APIApplicationCommand['contexts']) ?? null,
            integration_types: (c.integration_types as APIApplicationCommand['integration_types']) ?? [0],
          }
        : {}),
    };
    return result;
  };

  const validateOptions = (options: unknown, path: string, depth: number): void => {
    if (!Array.isArray(options)) throw fieldError(path, 'BASE_TYPE_LIST', 'Must be a list.');
    if (options.length > 25) throw fieldError(path, 'BASE_TYPE_MAX_LENGTH', 'Must be 25 or fewer in length.');
    let sawOptional = false;
    const names = new Set<string>();
    const kinds = new Set<'sub' | 'leaf'>();
    for (const [i, raw] of options.entries()) {
      const o = raw as Record<string, unknown>;
      const p = `${path}.${i}`;
      if (typeof o.type !== 'number' || o.type < 1 || o.type > 11)
        throw fieldError(`${p}.type`, 'BASE_TYPE_CHOICES', 'Value must be a valid option type.');
      if (
        typeof o.name !== 'string' ||
        !/^[-_'\p{L}\p{N}\p{sc=Deva}\p{sc=Thai}]{1,32}$/u.test(o.name) ||
        o.name !== o.name.toLowerCase()
      )
        throw fieldError(`${p}.name`, 'APPLICATION_COMMAND_INVALID_NAME', 'Command name is invalid');
      if (typeof o.description !== 'string' || o.description.length < 1 || o.description.length > 100)
        throw fieldError(`${p}.description`, 'BASE_TYPE_BAD_LENGTH', 'Must be between 1 and 100 in length.');
      if (names.has(o.name))
        throw fieldError(`${p}.name`, 'APPLICATION_COMMAND_OPTIONS_NAME_ALREADY_EXISTS', 'Option names must be unique');
      names.add(o.name);
      const isSub = o.type === 1 || o.type === 2;
      kinds.add(isSub ? 'sub' : 'leaf');
      if (kinds.size > 1)
        throw fieldError(p, 'APPLICATION_COMMAND_OPTIONS_TYPE_INVALID', 'Subcommands cannot be mixed with options');
      if (isSub) {
        if (o.type === 2 && depth > 0)
          throw fieldError(`${p}.type`, 'APPLICATION_COMMAND_OPTIONS_TYPE_INVALID', 'Groups cannot be nested');
        if (o.options !== undefined) validateOptions(o.options, `${p}.options`, depth + 1);
        continue;
      }
      if (o.required === true && sawOptional)
        throw fieldError(
          p,
          'APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID',
          'Required options must be placed before non-required options',
        );
      if (o.required !== true) sawOptional = true;
      if (Array.isArray(o.choices) && o.choices.length > 25)
        throw fieldError(`${p}.choices`, 'BASE_TYPE_MAX_LENGTH', 'Must be 25 or fewer in length.');
    }
  };

  const banRoute = (ctx: RouteContext): RouteResult => {
    requireGuild(ctx.params.guild!);
    if (!botCan(PermissionFlagsBits.BanMembers)) throw E.missingPermissions();
    const userId = ctx.params.user!;
    switch (ctx.method) {
      case 'GET': {
        const ban = bans.get(userId);
        if (!ban) throw E.unknownBan();
        return { status: 200, body: ban };
      }
      case 'PUT': {
        const user = users.get(userId);
        if (!user) throw E.unknownUser();
        if (members.has(userId) && highestRolePosition(userId) >= highestRolePosition(botUser.id))
          throw E.missingPermissions();
        const body = messageBodyFrom(ctx.body) as { delete_message_seconds?: unknown };
        const seconds = body.delete_message_seconds;
        if (seconds !== undefined && (typeof seconds !== 'number' || seconds < 0 || seconds > 604800))
          throw fieldError(
            'delete_message_seconds',
            'NUMBER_TYPE_MAX',
            'int value should be less than or equal to 604800.',
          );
        if (!bans.has(userId)) banInternal(userId, { reason: ctx.query.get('reason') ?? null });
        return { status: 204 };
      }
      default: {
        const ban = bans.get(userId);
        if (!ban) throw E.unknownBan();
        bans.delete(userId);
        gateway.dispatch(
          GatewayDispatchEvents.GuildBanRemove,
          { guild_id: guildId, user: ban.user },
          GatewayIntentBits.GuildModeration,
        );
        return { status: 204 };
      }
    }
  };

  const memberRoleRoute = (ctx: RouteContext): RouteResult => {
    requireGuild(ctx.params.guild!);
    const m = members.get(ctx.params.user!);
    if (!m) throw E.unknownMember();
    const role = roles.get(ctx.params.role!);
    if (!role || role.id === guildId) throw E.unknownRole();
    if (!botCan(PermissionFlagsBits.ManageRoles) || role.managed || role.position >= highestRolePosition(botUser.id))
      throw E.missingPermissions();
    const has = m.roles.includes(role.id);
    if (ctx.method === 'PUT' && !has) m.roles.push(role.id);
    if (ctx.method === 'DELETE' && has) m.roles = m.roles.filter((r) => r !== role.id);
    if ((ctx.method === 'PUT') !== has) memberUpdateDispatch(m);
    return { status: 204 };
  };

  const routes: Route[] = [];
  const route = (
    method: string,
    pattern: string,
    handler: Route['handler'],
    opts: { auth?: Route['auth']; major?: string[] } = {},
  ) => {
    routes.push({
      method,
      pattern,
      segments: pattern.split('/').filter(Boolean),
      auth: opts.auth ?? 'bot',
      major: opts.major ?? (pattern.includes(':guild') ? ['guild'] : pattern.includes(':channel') ? ['channel'] : []),
      handler,
    });
  };

  const gatewayInfo = () => ({ url: gateway.url });
  route('GET', '/gateway', () => ({ status: 200, body: gatewayInfo() }), { auth: 'none' });
  route('GET', '/gateway/bot', () => ({
    status: 200,
    body: {
      ...gatewayInfo(),
      shards: 1,
      session_start_limit: { total: 1000, remaining: 1000, reset_after: 0, max_concurrency: 1 },
    },
  }));
  route('GET', '/users/@me', () => ({ status: 200, body: { ...botUser, verified: true, mfa_enabled: false } }));
  route('POST', '/users/@me/channels', (ctx) => {
    const body = messageBodyFrom(ctx.body) as { recipient_id?: unknown };
    if (typeof body.recipient_id !== 'string' || !isSnowflake(body.recipient_id))
      throw fieldError('recipient_id', 'BASE_TYPE_REQUIRED', 'This field is required');
    const user = users.get(body.recipient_id);
    if (!user || user.id === botUser.id)
      throw new DiscordHttpError(400, { message: 'Invalid Recipient(s)', code: 50033 });
    return { status: 200, body: dmChannelFor(user) };
  });
  route('GET', '/users/:user', (ctx) => {
    const user = users.get(ctx.params.user!);
    if (!user) throw E.unknownUser();
    return { status: 200, body: user };
  });
  route('GET', '/applications/@me', () => ({
    status: 200,
    body: {
      id: applicationId,
      name: botUser.username,
      icon: null,
      description: '',
      summary: '',
      type: null,
      bot_public: false,
      bot_require_code_grant: false,
      verify_key: '0'.repeat(64),
      flags: appFlags,
      team: null,
      owner: owner,
      bot: botUser,
      approximate_guild_count: 1,
      integration_types_config: { '0': {} },
      install_params: undefined,
      redirect_uris: [],
      interactions_endpoint_url: null,
      tags: [],
    },
  }));
  for (const scope of ['global', 'guild'] as const) {
    const base = scope === 'global' ? '/applications/:app/commands' : '/applications/:app/guilds/:guild/commands';
    const list = () => (scope === 'global' ? commands.global : commands.guild);
    const major = { major: ['app'] };
    route(
      'GET',
      base,
      (ctx) => {
        requireApp(ctx.params.app!);
        if (scope === 'guild') requireGuild(ctx.params.guild!);
        return { status: 200, body: list() };
      },
      major,
    );
    route('PUT', base, (ctx) => putCommands(scope, ctx), major);
    route('POST', base, (ctx) => postCommand(scope, ctx), major);
    route(
      'GET',
      `${base}/:command`,
      (ctx) => {
        requireApp(ctx.params.app!);
        const c = list().find((x) => x.id === ctx.params.command);
        if (!c) throw E.unknownCommand();
        return { status: 200, body: c };
      },
      major,
    );
    route(
      'DELETE',
      `${base}/:command`,
      (ctx) => {
        requireApp(ctx.params.app!);
        const l = list();
        const i = l.findIndex((x) => x.id === ctx.params.command);
        if (i < 0) throw E.unknownCommand();
        l.splice(i, 1);
        return { status: 204 };
      },
      major,
    );
  }
  route('GET', '/guilds/:guild', (ctx) => {
    requireGuild(ctx.params.guild!);
    return { status: 200, body: guildJson(ctx.query.get('with_counts') === 'true') };
  });
  route('GET', '/guilds/:guild/roles', (ctx) => {
    requireGuild(ctx.params.guild!);
    return { status: 200, body: [...roles.values()] };
  });
  route('GET', '/guilds/:guild/channels', (ctx) => {
    requireGuild(ctx.params.guild!);
    return { status: 200, body: [...channels.values()] };
  });
  route('GET', '/guilds/:guild/members', (ctx) => {
    requireGuild(ctx.params.guild!);
    // List Guild Members needs the Server Members intent enabled for the app.
    if (!membersIntentAllowed) throw E.missingAccess();
    const limit = Number(ctx.query.get('limit') ?? '1');
    if (!Number.isInteger(limit) || limit < 1 || limit > 1000)
      throw fieldError('limit', 'NUMBER_TYPE_MAX', 'int value should be less than or equal to 1000.');
    const after = BigInt(ctx.query.get('after') ?? '0');
    const list = [...members.values()]
      .filter((m) => BigInt(m.user.id) > after)
      .sort((a, b) => (BigInt(a.user.id) < BigInt(b.user.id) ? -1 : 1))
      .slice(0, limit)
      .map(memberJson);
    return { status: 200, body: list };
  });
  route('GET', '/guilds/:guild/members/:user', (ctx) => {
    requireGuild(ctx.params.guild!);
    const m = members.get(ctx.params.user!);
    if (!m) throw E.unknownMember();
    return { status: 200, body: memberJson(m) satisfies APIGuildMember };
  });
  route('DELETE', '/guilds/:guild/members/:user', (ctx) => {
    requireGuild(ctx.params.guild!);
    const userId = ctx.params.user!;
    if (!members.has(userId)) throw E.unknownMember();
    if (!botCan(PermissionFlagsBits.KickMembers) || highestRolePosition(userId) >= highestRolePosition(botUser.id))
      throw E.missingPermissions();
    removeMemberInternal(userId);
    return { status: 204 };
  });
  route('PUT', '/guilds/:guild/members/:user/roles/:role', memberRoleRoute);
  route('DELETE', '/guilds/:guild/members/:user/roles/:role', memberRoleRoute);
  route('GET', '/guilds/:guild/bans', (ctx) => {
    requireGuild(ctx.params.guild!);
    if (!botCan(PermissionFlagsBits.BanMembers)) throw E.missingPermissions();
    return { status: 200, body: [...bans.values()] };
  });
  route('GET', '/guilds/:guild/bans/:user', banRoute);
  route('PUT', '/guilds/:guild/bans/:user', banRoute);
  route('DELETE', '/guilds/:guild/bans/:user', banRoute);
  route('GET', '/channels/:channel', (ctx) => {
    const { guild, dm } = channelFor(ctx.params.channel!);
    return { status: 200, body: (guild ?? dm) as APIChannel };
  });
  route('POST', '/channels/:channel/messages', postMessage);
  route('GET', '/channels/:channel/messages/:message', (ctx) => ({ status: 200, body: channelMessage(ctx).message }));
  route('PATCH', '/channels/:channel/messages/:message', (ctx) => {
    const stored = channelMessage(ctx);
    if (stored.message.author.id !== botUser.id)
      throw new DiscordHttpError(403, { message: 'Cannot edit a message authored by another user', code: 50005 });
    const body = messageBodyFrom(ctx.body);
    validateMessageBody(body, true, ctx.files.length);
    if (
      isEmptyMessage(
        { ...stored.message, ...body } as MessageBody,
        ctx.files.length + stored.message.attachments.length,
      )
    )
      throw E.emptyMessage();
    applyEdit(stored.message, body, ctx.files);
    return { status: 200, body: stored.message };
  });
  route('DELETE', '/channels/:channel/messages/:message', (ctx) => {
    const stored = channelMessage(ctx);
    if (stored.message.author.id !== botUser.id && !botCan(PermissionFlagsBits.ManageMessages, ctx.params.channel))
      throw E.missingPermissions();
    stored.deleted = true;
    return { status: 204 };
  });
  route('POST', '/interactions/:interaction/:token/callback', interactionCallback, {
    auth: 'optional',
    major: ['interaction'],
  });
  const webhookOpts = { auth: 'optional' as const, major: ['app', 'token'] };
  route('POST', '/webhooks/:app/:token', followUp, webhookOpts);
  route(
    'GET',
    '/webhooks/:app/:token/messages/:message',
    (ctx) => {
      const st = webhookInteraction(ctx);
      return { status: 200, body: webhookMessage(st, ctx.params.message!) };
    },
    webhookOpts,
  );
  route('PATCH', '/webhooks/:app/:token/messages/:message', editWebhookMessage, webhookOpts);
  route('DELETE', '/webhooks/:app/:token/messages/:message', deleteWebhookMessage, webhookOpts);

  const matchRoute = (
    method: string,
    path: string,
  ): { route: Route; params: Record<string, string> } | 'method' | null => {
    const parts = path.split('/').filter(Boolean);
    let pathMatched = false;
    // Literal segments win over parameters (`/users/@me` before `/users/:user`).
    const candidates = routes
      .filter((r) => r.segments.length === parts.length)
      .sort((a, b) => literalScore(b) - literalScore(a));
    for (const r of candidates) {
      const params: Record<string, string> = {};
      const ok = r.segments.every((seg, i) => {
        if (seg.startsWith(':')) {
          params[seg.slice(1)] = parts[i]!;
          return true;
        }
        return seg === parts[i];
      });
      if (!ok) continue;
      pathMatched = true;
      if (r.method === method) return { route: r, params };
    }
    return pathMatched ? 'method' : null;
  };

  // --- REST: HTTP plumbing ---------------------------------------------------------------------

  const rateLimitHeaders = (bucket: Bucket, at: number): Record<string, string> => ({
    'x-ratelimit-limit': String(bucket.limit),
    'x-ratelimit-remaining': String(bucket.remaining),
    'x-ratelimit-reset': (bucket.resetAt / 1000).toFixed(3),
    'x-ratelimit-reset-after': (Math.max(0, bucket.resetAt - at) / 1000).toFixed(3),
    'x-ratelimit-bucket': bucket.hash,
  });

  const readRaw = (req: IncomingMessage): Promise<Buffer> =>
    new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => resolve(Buffer.concat(chunks)));
      req.on('error', reject);
    });

  const parseBody = async (req: IncomingMessage, raw: Buffer): Promise<{ body: unknown; files: StoredFile[] }> => {
    if (raw.length === 0) return { body: undefined, files: [] };
    const type = req.headers['content-type'] ?? '';
    if (type.startsWith('application/json')) {
      try {
        return { body: JSON.parse(raw.toString('utf8')), files: [] };
      } catch {
        throw E.invalidJson();
      }
    }
    if (type.startsWith('multipart/form-data')) {
      const form = await new Request('http://fake.invalid/', {
        method: 'POST',
        headers: { 'content-type': type },
        body: raw,
      }).formData();
      let body: Record<string, unknown> = {};
      const files: StoredFile[] = [];
      for (const [field, value] of form.entries()) {
        if (typeof value === 'string') {
          if (field === 'payload_json') {
            try {
              body = { ...body, ...JSON.parse(value) };
            } catch {
              throw E.invalidJson();
            }
          } else body[field] = value;
        } else {
          files.push({
            field,
            name: value.name,
            contentType: value.type || 'application/octet-stream',
            data: Buffer.from(await value.arrayBuffer()),
          });
        }
      }
      // `attachments[].filename` in payload_json names the file sent as `files[id]`.
      const described = Array.isArray(body.attachments)
        ? (body.attachments as Array<{ id?: unknown; filename?: unknown }>)
        : [];
      for (const f of files) {
        const m = /^files\[(\d+)\]$/.exec(f.field);
        const d = m ? described.find((a) => String(a.id) === m[1]) : undefined;
        if (d && typeof d.filename === 'string') f.name = d.filename;
      }
      return { body, files };
    }
    throw fieldError(
      '_errors',
      'CONTENT_TYPE_INVALID',
      "Expected \"Content-Type\" header to be one of {'application/json', 'multipart/form-data'}.",
    );
  };

  const send = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string>) => {
    if (status === 204 || body === undefined) {
      res.writeHead(status, headers);
      res.end();
      return;
    }
    const text = JSON.stringify(body);
    res.writeHead(status, {
      ...headers,
      'content-type': 'application/json',
      'content-length': String(Buffer.byteLength(text)),
    });
    res.end(text);
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const at = Date.now();
    const url = new URL(req.url ?? '/', 'http://fake.invalid');
    const method = req.method ?? 'GET';
    const raw = await readRaw(req);
    const call: RecordedCall = {
      method,
      path: decodePath(
        url.pathname.startsWith(API_PREFIX) ? url.pathname.slice(API_PREFIX.length) || '/' : url.pathname,
      ),
      route: null,
      query: Object.fromEntries(url.searchParams),
      body: undefined,
      files: [],
      authorized: false,
      status: 0,
      at,
    };
    calls.push(call);
    let headers: Record<string, string> = {};
    try {
      if (!url.pathname.startsWith(`${API_PREFIX}/`)) throw E.notFound();
      const matched = matchRoute(method, call.path);
      if (matched === null) throw E.notFound();
      if (matched === 'method') throw E.methodNotAllowed();
      const { route: r, params } = matched;
      call.route = r.pattern;

      const auth = req.headers.authorization;
      call.authorized = auth === `Bot ${token}`;
      if ((r.auth === 'bot' && !call.authorized) || (r.auth === 'optional' && auth !== undefined && !call.authorized))
        throw E.unauthorized();

      for (const [name, value] of Object.entries(params)) {
        if (SNOWFLAKE_PARAMS.has(name) && !isSnowflake(value))
          throw fieldError(`${name}_id`, 'NUMBER_TYPE_COERCE', `Value "${value}" is not snowflake.`);
      }

      // Injected 429s, then the route's bucket.
      const injection = injections.find(
        (inj) =>
          (!inj.method || inj.method.toUpperCase() === method) &&
          (inj.path instanceof RegExp ? inj.path.test(call.path) : inj.path === r.pattern || inj.path === call.path),
      );
      const hash = bucketHash(method, r.pattern);
      const key = `${hash}:${r.major.map((p) => params[p]).join(':')}`;
      let bucket = buckets.get(key);
      if (!bucket || at >= bucket.resetAt) {
        bucket = { limit: rateLimit.limit, remaining: rateLimit.limit, resetAt: at + rateLimit.windowMs, hash };
        buckets.set(key, bucket);
      }
      if (injection) {
        injection.count--;
        if (injection.count <= 0) injections.splice(injections.indexOf(injection), 1);
        const retryMs = injection.retryAfter * 1000;
        headers = {
          ...rateLimitHeaders({ ...bucket, remaining: 0, resetAt: at + retryMs }, at),
          'retry-after': String(Math.ceil(injection.retryAfter)),
          'x-ratelimit-scope': injection.global ? 'global' : 'user',
          ...(injection.global ? { 'x-ratelimit-global': 'true' } : {}),
        };
        throw new DiscordHttpError(
          429,
          {
            message: 'You are being rate limited.',
            retry_after: injection.retryAfter,
            global: injection.global,
          } as never,
          headers,
        );
      }
      if (bucket.remaining <= 0) {
        const retryAfter = (bucket.resetAt - at) / 1000;
        headers = {
          ...rateLimitHeaders(bucket, at),
          'retry-after': String(Math.ceil(retryAfter)),
          'x-ratelimit-scope': 'user',
        };
        throw new DiscordHttpError(
          429,
          { message: 'You are being rate limited.', retry_after: retryAfter, global: false } as never,
          headers,
        );
      }
      bucket.remaining--;
      headers = rateLimitHeaders(bucket, at);

      const { body, files } = await parseBody(req, raw);
      call.body = body;
      call.files = files.map((f) => ({
        field: f.field,
        name: f.name,
        contentType: f.contentType,
        size: f.data.length,
      }));
      const result = await r.handler({
        method,
        path: call.path,
        params,
        query: url.searchParams,
        body,
        files,
      });
      call.status = result.status;
      send(res, result.status, result.body, headers);
    } catch (err) {
      const e =
        err instanceof DiscordHttpError
          ? err
          : new DiscordHttpError(500, { message: `fake discord: ${(err as Error).message}`, code: 0 });
      call.status = e.status;
      call.code = e.body.code;
      send(res, e.status, e.body, { ...headers, ...e.headers });
    } finally {
      changed();
    }
  };

  const server = createServer((req, res) => {
    handle(req, res).catch(() => res.destroy());
  });
  server.on('upgrade', (req, socket, head) => gateway.handleUpgrade(req, socket, head));

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  baseUrl = `http://127.0.0.1:${port}`;
  gateway.setBaseUrl(`ws://127.0.0.1:${port}`);

  return {
    url: baseUrl,
    gatewayUrl: gateway.url,
    token,
    applicationId,
    botUserId: botUser.id,
    guildId,
    ownerId: owner.id,
    generalChannelId: general.id,
    modLogChannelId: modLog.id,
    roleIds: { everyone: guildId, moderator: moderatorRole.id, member: memberRole.id, bot: botRole.id },
    calls,
    messages,
    dms,
    interactions,
    users,
    members,
    bans,
    roles,
    channels,
    dmChannels,
    commands,
    commandPuts,
    gatewayFrames: gateway.frames,
    gatewayConnections: gateway.connections,
    identifies: gateway.identifies,
    get identifyCount() {
      return gateway.identifyCount;
    },
    get resumeCount() {
      return gateway.resumeCount;
    },
    sessionIntents: () => gateway.activeSessions().map((s) => s.intents),
    createUser,
    addMember,
    removeMember: (userId) => {
      requireMember(userId);
      removeMemberInternal(userId);
      changed();
    },
    banUser: banInternal,
    unbanUser: (userId) => {
      const ban = bans.get(userId);
      if (!ban) throw new Error(`fake discord: ${userId} is not banned`);
      bans.delete(userId);
      gateway.dispatch(
        GatewayDispatchEvents.GuildBanRemove,
        { guild_id: guildId, user: ban.user },
        GatewayIntentBits.GuildModeration,
      );
      changed();
    },
    updateMember,
    addRole,
    addChannel,
    setDmsClosed: (userId, closed = true) => {
      requireUser(userId);
      if (closed) dmsClosed.add(userId);
      else dmsClosed.delete(userId);
    },
    permissionsOf,
    interact,
    closeGateway: (code = 4000, reason = '') => gateway.closeGateway(code, reason),
    requestReconnect: () => gateway.requestReconnect(),
    invalidateSession: (resumable) => gateway.invalidateSessions(resumable),
    injectRateLimit: (injection) => {
      injections.push({
        path: injection.path,
        retryAfter: injection.retryAfter ?? 0.25,
        global: injection.global ?? false,
        count: injection.count ?? 1,
        ...(injection.method ? { method: injection.method } : {}),
      });
    },
    waitFor,
    close: async () => {
      await gateway.close();
      await new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      });
      changes.removeAllListeners();
    },
  };
}

/** Decodes each path segment (`%40original` → `@original`); a malformed escape stays as sent. */
function decodePath(path: string): string {
  return path
    .split('/')
    .map((seg) => {
      try {
        return decodeURIComponent(seg);
      } catch {
        return seg;
      }
    })
    .join('/');
}

function literalScore(r: Route): number {
  return r.segments.filter((s) => !s.startsWith(':')).length;
}

function hasButton(message: APIMessage, customId: string): boolean {
  const walk = (components: unknown[] | undefined): boolean =>
    (components ?? []).some((c) => {
      const comp = c as { type?: number; custom_id?: string; disabled?: boolean; components?: unknown[] };
      if (comp.type === ComponentType.Button && comp.custom_id === customId && comp.disabled !== true) return true;
      return walk(comp.components);
    });
  return walk(message.components as unknown[] | undefined);
}

export { ALL_PERMISSIONS };
