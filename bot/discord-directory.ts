// DiscordDirectory over a discord.js client. Membership and bans are asked of Discord's REST API
// every time (authoritative, and no member cache to grow); REST calls are queued per route and wait
// out rate limits inside discord.js.
import {
  type APIGuildMember,
  CannotSendMessagesToThisUserErrorCodes,
  type Client,
  RESTJSONErrorCodes,
  Routes,
  type SendableChannels,
} from 'discord.js';
import type { Logger } from 'pino';
import type { DiscordConfig } from '../src/config/schema.js';
import { describeError, discordCode } from './errors.js';
import type { DiscordDirectory, GuildMember } from './types.js';

const NOT_A_MEMBER: ReadonlySet<unknown> = new Set([RESTJSONErrorCodes.UnknownMember, RESTJSONErrorCodes.UnknownUser]);
const CANNOT_DM: ReadonlySet<unknown> = new Set(CannotSendMessagesToThisUserErrorCodes);

export class ClientDirectory implements DiscordDirectory {
  #modLog: Promise<SendableChannels | null> | null = null;
  #warnedBanAccess = false;

  constructor(
    private readonly client: Client,
    private readonly config: DiscordConfig,
    private readonly log: Logger,
  ) {}

  async member(userId: string): Promise<GuildMember | null> {
    try {
      // Raw REST rather than guild.members.fetch: role ids exactly as Discord sends them, not filtered
      // through discord.js's role cache.
      const m = (await this.client.rest.get(Routes.guildMember(this.config.guildId, userId))) as APIGuildMember;
      return {
        userId,
        roleIds: m.roles,
        pending: m.pending ?? false,
        joinedAt: m.joined_at ? new Date(m.joined_at) : null,
      };
    } catch (err) {
      if (NOT_A_MEMBER.has(discordCode(err))) return null;
      throw err;
    }
  }

  async isBanned(userId: string): Promise<boolean> {
    try {
      await this.client.rest.get(Routes.guildBan(this.config.guildId, userId));
      return true;
    } catch (err) {
      const code = discordCode(err);
      if (code === RESTJSONErrorCodes.UnknownBan) return false;
      // Reading bans needs Ban Members. Without it a ban the reconciler finds is taken for a leave, so
      // the key still goes by the leave policy rather than staying live while every run fails.
      if (code === RESTJSONErrorCodes.MissingPermissions) {
        if (!this.#warnedBanAccess)
          this.log.warn('the bot lacks Ban Members: bans found by the reconciler count as leaves');
        this.#warnedBanAccess = true;
        return false;
      }
      throw err;
    }
  }

  async dm(userId: string, content: string): Promise<boolean> {
    try {
      await this.client.users.send(userId, { content, allowedMentions: { parse: [] } });
      return true;
    } catch (err) {
      if (!CANNOT_DM.has(discordCode(err))) this.log.warn({ err: describeError(err) }, 'direct message failed');
      return false;
    }
  }

  async modLog(content: string): Promise<void> {
    if (!this.config.modLogChannelId) return;
    try {
      const channel = await this.modLogChannel();
      // Mentions render as names without pinging anyone.
      await channel?.send({ content, allowedMentions: { parse: [] } });
    } catch (err) {
      this.log.warn({ err: describeError(err), channelId: this.config.modLogChannelId }, 'mod log post failed');
    }
  }

  /** Fetched once; a failed fetch is tried again on the next post. */
  private modLogChannel(): Promise<SendableChannels | null> {
    this.#modLog ??= this.client.channels.fetch(this.config.modLogChannelId!).then(
      (channel) => {
        if (channel?.isSendable()) return channel;
        this.log.warn({ channelId: this.config.modLogChannelId }, 'mod log channel is not a text channel');
        return null;
      },
      (err) => {
        this.#modLog = null;
        throw err;
      },
    );
    return this.#modLog;
  }
}
