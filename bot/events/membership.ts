// Gateway membership events → membership use cases, for the configured server only. Raw dispatches
// rather than discord.js's member events: those are dropped for members not in its cache and for
// events replayed while a session resumes, and a missed leave would keep a key alive.
import {
  type Client,
  GatewayDispatchEvents,
  type GatewayGuildBanAddDispatchData,
  type GatewayGuildMemberRemoveDispatchData,
  type GatewayGuildMemberUpdateDispatchData,
} from 'discord.js';
import type { Logger } from 'pino';
import type { InFlight } from '../../src/app/in-flight.js';
import {
  type MembershipAction,
  type MembershipDeps,
  type MembershipPolicy,
  memberBanned,
  memberLeft,
  memberRolesChanged,
  SYNC_ACTOR,
} from '../../src/app/membership.js';
import { describeError } from '../errors.js';

export function watchMembership(
  client: Client,
  deps: MembershipDeps,
  policy: MembershipPolicy,
  guildId: string,
  log: Logger,
  work: InFlight,
): void {
  // One user's events are applied in the order they arrived (a leave must not overtake a role update).
  const queues = new Map<string, Promise<void>>();
  const apply = (event: string, userId: string, change: () => Promise<MembershipAction[]>) => {
    const run = (queues.get(userId) ?? Promise.resolve())
      .then(change)
      .then(
        (actions) => {
          if (actions.length) log.info({ event, userId, actions }, 'membership change applied');
        },
        // A store hiccup: the reconciler's next run applies it.
        (err) => log.warn({ event, userId, err: describeError(err) }, 'membership event not applied'),
      )
      .finally(() => {
        if (queues.get(userId) === run) queues.delete(userId);
      });
    queues.set(userId, run);
    work.track(run);
  };

  client.ws.on(GatewayDispatchEvents.GuildMemberRemove, (d: GatewayGuildMemberRemoveDispatchData) => {
    if (d.guild_id !== guildId) return;
    apply('member_remove', d.user.id, () => memberLeft(deps, d.user.id, policy.leavePolicy, SYNC_ACTOR));
  });
  // Also sent alone when the banned user had already left.
  client.ws.on(GatewayDispatchEvents.GuildBanAdd, (d: GatewayGuildBanAddDispatchData) => {
    if (d.guild_id !== guildId) return;
    apply('ban_add', d.user.id, () => memberBanned(deps, d.user.id, SYNC_ACTOR));
  });
  client.ws.on(GatewayDispatchEvents.GuildMemberUpdate, (d: GatewayGuildMemberUpdateDispatchData) => {
    if (d.guild_id !== guildId) return;
    const member = { roleIds: d.roles, pending: d.pending ?? false };
    apply('member_update', d.user.id, () => memberRolesChanged(deps, d.user.id, member, policy, SYNC_ACTOR));
  });
}
