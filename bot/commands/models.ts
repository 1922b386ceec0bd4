// /models: what the member's tier may call.
import type { RESTPostAPIApplicationCommandsJSONBody } from 'discord-api-types/v10';
import { findLiveKey, tierForRoles } from '../../src/app/keys.js';
import { tierOf } from '../../src/app/usage-summary.js';
import { tierAllows } from '../../src/domain/model-access.js';
import type { BotDeps, Invoker, Reply } from '../types.js';
import { COMMAND, clip, GUILD_ONLY } from './shared.js';

export const data: RESTPostAPIApplicationCommandsJSONBody = {
  type: COMMAND.slash,
  name: 'models',
  description: 'The models your tier may call',
  contexts: GUILD_ONLY,
};

export async function models(deps: BotDeps, invoker: Invoker): Promise<Reply> {
  const { config } = deps.services;
  const key = await findLiveKey(deps.services, invoker.userId);
  // Without a key, the tier a key would get now (roles from the interaction are enough for a preview).
  const { name, tier } = tierOf(config, key?.tier ?? tierForRoles(deps.config.roleTiers, invoker.roleIds));
  const allowed = Object.entries(config.models).filter(([model]) => tierAllows(tier, model));
  const list = (kind: 'chat' | 'embedding') =>
    allowed
      .filter(([, m]) => m.kind === kind)
      .map(([model]) => `\`${model}\``)
      .join(', ') || 'none';
  return {
    kind: 'text',
    content: clip(
      [
        `Models tier **${name}** may call${key ? '' : ' (the tier a new key would get)'}:`,
        `**Chat:** ${list('chat')}`,
        `**Embeddings:** ${list('embedding')}`,
      ].join('\n'),
    ),
  };
}
