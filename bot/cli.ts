// `guildgate commands register`: replaces the server's slash commands with the bot's definitions now
// (the bot also does it at start, but only when they changed). Lives in bot/ because the definitions
// do; bin/guildgate.mjs routes `commands ...` here and everything else to the operator CLI in src/.
import { REST } from 'discord.js';
import { ConfigError, loadConfig } from '../src/config/load.js';
import { commandDefinitions } from './commands/index.js';
import { registerCommands } from './register.js';

const USAGE = 'usage: guildgate commands register\n';

/** Exit codes as the operator CLI's: 0 done, 2 bad usage or config, 3 Discord refused or failed. */
export async function runCommandsCli(argv: string[]): Promise<number> {
  if (argv.length !== 2 || argv[0] !== 'commands' || argv[1] !== 'register') {
    process.stderr.write(USAGE);
    return 2;
  }
  let config: ReturnType<typeof loadConfig>;
  try {
    config = loadConfig();
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`${err.message}\n`);
    return 2;
  }
  const { discord } = config;
  const token = config.env.discordBotToken;
  if (!discord || !token) {
    process.stderr.write('Registering commands needs a discord section in the config and DISCORD_BOT_TOKEN.\n');
    return 2;
  }
  const definitions = commandDefinitions(Object.keys(config.tiers));
  try {
    const rest = new REST({ api: discord.apiBaseUrl }).setToken(token);
    await registerCommands(rest, discord.applicationId, discord.guildId, definitions);
  } catch (err) {
    // discord.js errors name the route and Discord's message, never the token.
    process.stderr.write(`error: Discord refused the registration: ${(err as Error).message}\n`);
    return 3;
  }
  process.stdout.write(`Registered ${definitions.length} commands in server ${discord.guildId}.\n`);
  return 0;
}
