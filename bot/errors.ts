// What of an error may reach the logs. discord.js errors carry the request URL (an interaction's
// webhook token) and the request body (a reply may hold a new key), so error objects are never
// logged whole.
import { DiscordAPIError } from 'discord.js';

export function describeError(err: unknown): Record<string, unknown> {
  if (err instanceof DiscordAPIError) {
    return { type: 'DiscordAPIError', code: err.code, status: err.status, method: err.method, message: err.message };
  }
  if (err instanceof Error) return { type: err.name, message: err.message, stack: err.stack };
  return { type: typeof err };
}

/** The Discord JSON error code of a REST failure, if it is one. */
export function discordCode(err: unknown): number | string | null {
  return err instanceof DiscordAPIError ? err.code : null;
}
