// Gate refusals as the web words them: which gate, why, and what to do. The reasons come from the
// domain (the same as the bot's); role mentions, which only Discord can display, become role ids.
import type { GateName } from '../domain/gates.js';
import { PageError } from './respond.js';

const GATES: Record<GateName, { title: string; todo: string }> = {
  not_member: {
    title: 'Not a member of the server',
    todo: 'Join the Discord server, then sign in here again.',
  },
  screening_pending: {
    title: 'Membership screening not completed',
    todo: 'Open the server in Discord and complete its membership screening, then sign in here again.',
  },
  missing_role: {
    title: 'A required role is missing',
    todo: "Ask the server's moderators how to get it, then sign in here again.",
  },
  account_too_new: {
    title: 'Discord account too new',
    todo: 'Come back when your account is old enough; nothing else is needed.',
  },
  member_too_new: {
    title: 'Joined the server too recently',
    todo: 'Come back when you have been in the server long enough; nothing else is needed.',
  },
};

export function gateRefusal(gate: GateName, message: string): PageError {
  const { title, todo } = GATES[gate];
  const reason = message.replace(/<@&(\d+)>/g, 'role $1');
  return new PageError(403, title, `${reason} ${todo}`, [
    { href: '/auth/discord', label: 'Sign in again' },
    { href: '/dashboard', label: 'Back to your dashboard' },
  ]);
}
