// Starts the Discord bot on already-built services: logs in, answers interactions, applies
// membership events, reconciles key holders and registers the commands when they changed.
import { once } from 'node:events';
import { type Client, Events } from 'discord.js';
import type { Logger } from 'pino';
import { InFlight } from '../src/app/in-flight.js';
import type { MembershipDeps, MembershipPolicy } from '../src/app/membership.js';
import type { Config } from '../src/config/schema.js';
import type { Services } from '../src/services.js';
import { createClient } from './client.js';
import { commandDefinitions } from './commands/index.js';
import { ClientDirectory } from './discord-directory.js';
import { describeError } from './errors.js';
import { watchMembership } from './events/membership.js';
import { KeyReveals } from './key-reveals.js';
import { createReconciler } from './reconcile.js';
import { syncCommands } from './register.js';
import { createRouter } from './router.js';

/** How long stopping waits for commands and membership events under way. */
const DRAIN_MS = 5_000;

export interface RunningBot {
  client: Client;
  /** Stops reconciling, lets work under way finish, takes shown keys out of their replies and disconnects. Idempotent. */
  stop(): Promise<void>;
}

function membershipPolicy(config: Config): MembershipPolicy {
  return {
    leavePolicy: config.discord?.leavePolicy ?? 'suspend',
    requiredRoleIds: config.gates.requiredRoleIds,
    requireScreening: config.gates.requireScreening,
    roleTiers: config.discord?.roleTiers ?? {},
    defaultTier: config.defaultTier,
  };
}

/** Whether this config runs a bot: a discord section and DISCORD_BOT_TOKEN. */
export function botConfigured(config: Config): boolean {
  return Boolean(config.discord && config.env.discordBotToken);
}

export async function startBot(services: Services, opts: { log: Logger }): Promise<RunningBot> {
  const config = services.config.discord;
  const token = services.config.env.discordBotToken;
  if (!config || !token) throw new Error('The bot needs a discord section in the config and DISCORD_BOT_TOKEN.');
  const log = opts.log.child({ component: 'discord' });

  const client = createClient(config, log);
  const discord = new ClientDirectory(client, config, log);
  const membership: MembershipDeps = { keys: services.keys, discord };
  const policy = membershipPolicy(services.config);
  const reveals = new KeyReveals(config.keyRevealMs, log);
  const reconciler = createReconciler(membership, policy, config.reconcileIntervalMs, log);
  const work = new InFlight();
  client.on(Events.InteractionCreate, createRouter({ services, discord, config }, reveals, log, work));
  watchMembership(client, membership, policy, config.guildId, log, work);

  const ready = once(client, Events.ClientReady);
  try {
    await client.login(token);
    await ready;
  } catch (err) {
    await client.destroy();
    throw err;
  }
  reconciler.start();
  try {
    const definitions = commandDefinitions(Object.keys(services.config.tiers));
    const changed = await syncCommands(client.rest, config.applicationId, config.guildId, definitions);
    log.info({ changed }, changed ? 'slash commands registered' : 'slash commands up to date');
  } catch (err) {
    log.error({ err: describeError(err) }, 'slash command registration failed');
  }
  log.info({ bot: client.user?.id, guildId: config.guildId }, 'discord bot ready');

  let stopping: Promise<void> | null = null;
  return {
    client,
    stop() {
      stopping ??= (async () => {
        await reconciler.stop();
        await work.settled(Date.now() + DRAIN_MS);
        await reveals.flush();
        await client.destroy();
      })();
      return stopping;
    },
  };
}
