// Whether the web face runs; a module of its own so the relay can decide without loading the web.
import type { Config } from '../config/schema.js';

/** On when the discord section is present and both secrets are set. */
export function webEnabled(config: Config): boolean {
  return Boolean(config.discord && config.env.discordClientSecret && config.env.sessionSecret);
}
