// /mod lookup|revoke|suspend|restore|tier|ban|unban|stats and the user context menus. Every handler
// re-checks the invoker's rights first; every change is audited by the use case, posted to the mod
// log and told to the member by DM. Key material stays in the moderator's ephemeral reply only.
import type {
  APIApplicationCommandBasicOption,
  APIApplicationCommandSubcommandOption,
  RESTPostAPIApplicationCommandsJSONBody,
} from 'discord-api-types/v10';
import { type KeyAction, lookupUser, moderateKey, moderationStats, setBan } from '../../src/app/moderation.js';
import { findKeysInText } from '../../src/domain/keys.js';
import { type BotDeps, type Invoker, type Reply, UserError } from '../types.js';
import { requireModerator } from './permissions.js';
import { COMMAND, clip, describeStatus, GUILD_ONLY, MANAGE_SERVER, mention, num, OPTION, when } from './shared.js';
import { todayLine } from './usage.js';

export const CONTEXT_REVOKE = 'Revoke key';
export const CONTEXT_LOOKUP = 'Look up key holder';
/** Discord allows at most 25 choices; with more tiers the option is free text checked by the use case. */
const MAX_CHOICES = 25;
const REASON_MAX = 400;

const userOpt: APIApplicationCommandBasicOption = {
  type: OPTION.user,
  name: 'user',
  description: 'The member',
  required: true,
};
const reasonOpt = (required: boolean): APIApplicationCommandBasicOption => ({
  type: OPTION.string,
  name: 'reason',
  description: required ? 'Why (told to the member and the mod log)' : 'Why (optional)',
  required,
  max_length: REASON_MAX,
});
const sub = (
  name: string,
  description: string,
  options: APIApplicationCommandBasicOption[] = [],
): APIApplicationCommandSubcommandOption => ({ type: OPTION.subcommand, name, description, options });

/** `/mod` and the two user context menus. Tier names become choices when Discord allows them. */
export function modCommandData(tierNames: readonly string[]): RESTPostAPIApplicationCommandsJSONBody[] {
  const tierOpt: APIApplicationCommandBasicOption = {
    type: OPTION.string,
    name: 'tier',
    description: 'The new tier',
    required: true,
    ...(tierNames.length <= MAX_CHOICES ? { choices: tierNames.map((t) => ({ name: t, value: t })) } : {}),
  };
  const guarded = { contexts: GUILD_ONLY, default_member_permissions: MANAGE_SERVER };
  return [
    {
      type: COMMAND.slash,
      name: 'mod',
      description: 'Moderate members’ API keys',
      ...guarded,
      options: [
        sub('lookup', "A member's key, ban state and usage today", [userOpt]),
        sub('revoke', "Revoke a member's key for good", [userOpt, reasonOpt(true)]),
        sub('suspend', "Suspend a member's key until restored", [userOpt, reasonOpt(true)]),
        sub('restore', "Restore a member's suspended key", [userOpt, reasonOpt(false)]),
        sub('tier', "Change a member's key tier", [userOpt, tierOpt, reasonOpt(false)]),
        sub('ban', 'Ban a member from the relay (revokes their key)', [userOpt, reasonOpt(true)]),
        sub('unban', 'Lift a relay ban', [userOpt, reasonOpt(false)]),
        sub('stats', "Today's totals and top users"),
      ],
    },
    { type: COMMAND.user, name: CONTEXT_REVOKE, ...guarded },
    { type: COMMAND.user, name: CONTEXT_LOOKUP, ...guarded },
  ];
}

export interface ModTarget {
  user: string;
  reason: string | null;
}

/** Validates the reason and blanks any pasted key: reasons go to the audit log, the mod log and a DM. */
function cleanReason(reason: string | null, required: boolean): string | null {
  if (required && !reason) throw new UserError('A reason is required for this action.');
  if (!reason) return null;
  if (reason.length > REASON_MAX) throw new UserError(`Keep the reason under ${REASON_MAX} characters.`);
  return findKeysInText(reason).reduce((text, key) => text.replaceAll(key, '[key removed]'), reason);
}

/** Posts to the mod log and tells the member; returns the line for the moderator's reply. */
async function announce(
  deps: BotDeps,
  invoker: Invoker,
  o: ModTarget & { action: string; dm: string },
): Promise<string> {
  const why = o.reason ? `Reason: ${o.reason}` : 'No reason given.';
  await deps.discord.modLog(clip(`${o.action}: ${mention(o.user)} by ${mention(invoker.userId)}. ${why}`));
  const delivered = await deps.discord.dm(o.user, clip(`${o.dm}\n${why}`)).catch(() => false);
  return delivered
    ? `${mention(o.user)} was told by DM.`
    : `The DM to ${mention(o.user)} could not be delivered (DMs closed or no shared server).`;
}

const KEY_ACTIONS: Record<KeyAction, { log: string; past: string; dm: string }> = {
  revoke: {
    log: 'Key revoked',
    past: 'revoked',
    dm: 'A moderator revoked your Guildgate API key; it no longer works.',
  },
  suspend: {
    log: 'Key suspended',
    past: 'suspended',
    dm: 'A moderator suspended your Guildgate API key; it does not work until a moderator restores it.',
  },
  restore: {
    log: 'Key restored',
    past: 'restored',
    dm: 'A moderator restored your Guildgate API key; it works again.',
  },
  tier: { log: 'Key tier changed', past: 'moved to another tier', dm: '' },
};

export async function modKey(
  deps: BotDeps,
  invoker: Invoker,
  action: KeyAction,
  o: ModTarget & { tier?: string },
): Promise<Reply> {
  requireModerator(deps.config, invoker);
  const reason = cleanReason(o.reason, action === 'revoke' || action === 'suspend');
  const r = await moderateKey(deps.services.keys, {
    target: o.user,
    action,
    actor: `discord:${invoker.userId}`,
    reason,
    tier: o.tier,
  });
  const text = KEY_ACTIONS[action];
  if (!r.ok) {
    if (r.code === 'NOT_FOUND') throw new UserError(`${mention(o.user)} has no live key.`);
    if (r.code === 'WRONG_STATUS')
      throw new UserError(`${mention(o.user)}'s key is ${r.status}; it cannot be ${text.past}.`);
    if (r.code === 'UNKNOWN_TIER') {
      throw new UserError(`${r.message} Tiers: ${Object.keys(deps.services.config.tiers).join(', ')}.`);
    }
    throw new UserError(r.message);
  }
  const change = action === 'tier' ? ` from **${r.previous.tier}** to **${r.record.tier}**` : '';
  const dm = action === 'tier' ? `A moderator changed your Guildgate API key's tier${change}.` : text.dm;
  const note = await announce(deps, invoker, { user: o.user, reason, action: `${text.log}${change}`, dm });
  return {
    kind: 'text',
    content: `${text.log}${change}: ${mention(o.user)}'s key \`${r.record.prefix}…\`. ${note}`,
  };
}

export async function modBan(deps: BotDeps, invoker: Invoker, o: ModTarget & { banned: boolean }): Promise<Reply> {
  requireModerator(deps.config, invoker);
  const reason = cleanReason(o.reason, o.banned);
  const r = await setBan(deps.services.keys, {
    target: o.user,
    actor: `discord:${invoker.userId}`,
    banned: o.banned,
    reason,
  });
  if (!r.ok) throw new UserError(`${mention(o.user)} is ${o.banned ? 'already banned' : 'not banned'}.`);
  const [action, dm, done] = o.banned
    ? [
        'Banned from the relay',
        'A moderator banned you from the Guildgate relay: your API key no longer works and you cannot get a new one.',
        r.revoked ? 'Their live key was revoked.' : 'They had no live key.',
      ]
    : ['Relay ban lifted', 'A moderator lifted your Guildgate relay ban; `/key create` gets you a key again.', ''];
  const note = await announce(deps, invoker, { user: o.user, reason, action, dm });
  return { kind: 'text', content: [`${action}: ${mention(o.user)}.`, done, note].filter(Boolean).join(' ') };
}

export async function modLookup(deps: BotDeps, invoker: Invoker, o: { user: string }): Promise<Reply> {
  requireModerator(deps.config, invoker);
  const { user, key, usage } = await lookupUser(deps.services, o.user, deps.services.now());
  const week = usage.last7Days.reduce((t, d) => ({ r: t.r + d.requests, c: t.c + d.chargedTokens }), { r: 0, c: 0 });
  const lines = [
    `${mention(o.user)} (\`${o.user}\`)${user ? `, known since ${when(user.createdAt)}` : ', nothing stored'}`,
    key
      ? `Key: \`${key.prefix}…\`, tier **${key.tier}**, ${describeStatus(key)}, created ${when(key.createdAt)}`
      : 'Key: none',
    user?.bannedAt
      ? `Relay ban: since ${when(user.bannedAt)}: ${user.banReason || 'no reason given'}`
      : 'Relay ban: no',
    `Today: ${todayLine(usage)}; ${num(usage.rpm)} requests/min`,
    `Last 7 days: ${num(week.r)} requests, ${num(week.c)} tokens`,
  ];
  return { kind: 'text', content: lines.join('\n') };
}

export async function modStats(deps: BotDeps, invoker: Invoker): Promise<Reply> {
  requireModerator(deps.config, invoker);
  const s = await moderationStats(deps.services, deps.services.now());
  const atLeast = s.keys.capped ? 'at least ' : '';
  const top = s.top.map(
    (u, i) => `${i + 1}. ${mention(u.discordId)}: ${num(u.chargedTokens)} tokens, ${num(u.requests)} requests`,
  );
  return {
    kind: 'text',
    content: clip(
      [
        `**Today** (${s.day}): ${num(s.today.users)} users, ${num(s.today.requests)} requests, ${num(s.today.chargedTokens)} tokens`,
        `Keys: ${atLeast}${num(s.keys.active)} active, ${num(s.keys.suspended)} suspended`,
        '**Top users today**',
        ...(top.length ? top : ['(no requests yet)']),
      ].join('\n'),
    ),
  };
}
