// The discord.js client: the intents the bot needs and where its REST calls go. discord.js resumes
// after gateway closes and waits out 429s on its own; this only logs what happens (never the token).
import { Client, Events, GatewayIntentBits, RESTEvents } from 'discord.js';
import type { Logger } from 'pino';
import type { DiscordConfig } from '../src/config/schema.js';
import { describeError } from './errors.js';

export function createClient(config: DiscordConfig, log: Logger): Client {
  const client = new Client({
    // Member events need the privileged Server Members intent; without it the reconciler catches up.
    intents:
      GatewayIntentBits.Guilds |
      GatewayIntentBits.GuildModeration |
      (config.membersIntent ? GatewayIntentBits.GuildMembers : 0),
    rest: { api: config.apiBaseUrl },
  });
  client.on(Events.ShardError, (err, shardId) =>
    log.warn({ shardId, err: describeError(err) }, 'discord gateway error'),
  );
  client.on(Events.ShardReconnecting, (shardId) => log.info({ shardId }, 'discord gateway reconnecting'));
  client.on(Events.ShardResume, (shardId, replayed) => log.info({ shardId, replayed }, 'discord gateway resumed'));
  client.on(Events.ShardDisconnect, (event, shardId) =>
    log.error({ shardId, code: event.code }, 'discord gateway closed for good'),
  );
  // The route only: the full URL and major parameter of a webhook call contain the interaction token.
  client.rest.on(RESTEvents.RateLimited, (info) =>
    log.warn(
      { route: info.route, method: info.method, retryAfterMs: info.retryAfter, scope: info.scope, global: info.global },
      'discord rate limit, waiting',
    ),
  );
  return client;
}
