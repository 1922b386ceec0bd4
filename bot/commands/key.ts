// /key create|show|rotate|revoke: a member manages their own key.
import type { RESTPostAPIApplicationCommandsJSONBody } from 'discord-api-types/v10';
import { findLiveKey, issueKey, revokeKey, rotateKey, tierForRoles } from '../../src/app/keys.js';
import type { KeyRecord } from '../../src/domain/types.js';
import { type BotDeps, type Invoker, type Reply, UserError } from '../types.js';
import { keyReply } from './key-reply.js';
import { COMMAND, describeStatus, GUILD_ONLY, num, OPTION, refusal, requireServer, when } from './shared.js';

export const data: RESTPostAPIApplicationCommandsJSONBody = {
  type: COMMAND.slash,
  name: 'key',
  description: 'Your API key for the relay',
  contexts: GUILD_ONLY,
  options: [
    { type: OPTION.subcommand, name: 'create', description: 'Get your API key (one per member)' },
    { type: OPTION.subcommand, name: 'show', description: 'Your key prefix, tier and status' },
    { type: OPTION.subcommand, name: 'rotate', description: 'Replace your key; the old one stops working at once' },
    { type: OPTION.subcommand, name: 'revoke', description: 'Revoke your key for good' },
  ],
};

const actorOf = (invoker: Invoker) => `discord:${invoker.userId}`;

/** A suspension is a moderator's decision: the member may neither replace nor discard the key. */
function suspendedRefusal(key: KeyRecord): UserError {
  const why = key.statusReason ? ` (${key.statusReason})` : '';
  return new UserError(`Your key \`${key.prefix}…\` is suspended${why}. Ask a moderator if you think this is wrong.`);
}

export async function keyCreate(deps: BotDeps, invoker: Invoker): Promise<Reply> {
  requireServer(deps, invoker, '/key create');
  const discordId = invoker.userId;
  // Asked from Discord's REST API, not taken from the interaction: roles and screening must be current.
  const m = await deps.discord.member(discordId);
  const r = await issueKey(deps.services.keys, {
    discordId,
    actor: actorOf(invoker),
    tier: m ? tierForRoles(deps.config.roleTiers, m.roleIds) : undefined,
    member: { discordId, member: m && { pending: m.pending, roleIds: m.roleIds, joinedAt: m.joinedAt } },
  });
  if (r.ok) return keyReply(deps, r.key, r.record);
  if (r.code === 'KEY_EXISTS') {
    if (r.existing?.status === 'suspended') throw suspendedRefusal(r.existing);
    const which = r.existing ? ` (\`${r.existing.prefix}…\`)` : '';
    throw new UserError(
      `You already have a key${which}. Use \`/key rotate\` to replace it, or \`/key show\` to see it.`,
    );
  }
  if (r.code === 'BANNED') throw new UserError('You are banned from the relay and cannot get a key.');
  throw refusal(r);
}

export async function keyShow(deps: BotDeps, invoker: Invoker): Promise<Reply> {
  const key = await findLiveKey(deps.services, invoker.userId);
  if (!key) return { kind: 'text', content: 'You have no key. Use `/key create` to get one.' };
  const tier = deps.services.config.tiers[key.tier];
  const lines = [
    `Key: \`${key.prefix}…\``,
    `Tier: **${key.tier}**${tier ? ` (${num(tier.rpm)} requests/min, ${num(tier.tokensPerDay)} tokens/day)` : ''}`,
    `Status: ${describeStatus(key)}`,
    `Created: ${when(key.createdAt)}`,
  ];
  if (key.expiresAt) lines.push(`Expires: ${when(key.expiresAt)}`);
  return { kind: 'text', content: lines.join('\n') };
}

export async function keyRotate(deps: BotDeps, invoker: Invoker): Promise<Reply> {
  requireServer(deps, invoker, '/key rotate');
  const key = await findLiveKey(deps.services, invoker.userId);
  if (!key) throw new UserError('You have no key to rotate. Use `/key create` to get one.');
  if (key.status === 'suspended') throw suspendedRefusal(key);
  const r = await rotateKey(deps.services.keys, { keyId: key.id, actor: actorOf(invoker) });
  if (!r.ok) throw refusal(r);
  return keyReply(deps, r.key, r.record, `Your old key \`${key.prefix}…\` stopped working.`);
}

export async function keyRevoke(deps: BotDeps, invoker: Invoker): Promise<Reply> {
  const key = await findLiveKey(deps.services, invoker.userId);
  if (!key) throw new UserError('You have no key to revoke.');
  if (key.status === 'suspended') throw suspendedRefusal(key);
  const r = await revokeKey(deps.services.keys, { keyId: key.id, actor: actorOf(invoker), reason: 'revoked by owner' });
  if (!r.ok) throw refusal(r);
  return {
    kind: 'text',
    content: `Your key \`${key.prefix}…\` is revoked and stopped working. Use \`/key create\` for a new one.`,
  };
}
