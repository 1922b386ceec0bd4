// The message that shows a new key once, with what a developer needs to use it right away.
import { firstChatModel } from '../../src/domain/model-access.js';
import type { KeyRecord } from '../../src/domain/types.js';
import type { BotDeps, Reply } from '../types.js';
import { num } from './shared.js';

const ENV_VAR = 'GUILDGATE_API_KEY';

function duration(ms: number): string {
  return ms < 60_000 ? `${Math.round(ms / 1000)} seconds` : `${Math.round(ms / 60_000)} minutes`;
}

/**
 * `content` holds the key exactly once (the examples read it from an environment variable);
 * `redacted` is the same message with the key cut down to its prefix.
 */
export function keyReply(deps: BotDeps, key: string, record: KeyRecord, intro?: string): Reply {
  const { services } = deps;
  const tier = services.config.tiers[record.tier];
  const baseUrl = `${services.config.publicBaseUrl}/v1`;
  const model = (tier && firstChatModel(services.config.models, tier)) ?? 'MODEL_NAME';
  const limits = tier ? `: ${num(tier.rpm)} requests/min, ${num(tier.tokensPerDay)} tokens/day` : '';
  const body = (shown: string, note: string) =>
    [
      ...(intro ? [intro] : []),
      `**Your Guildgate API key** ${note}`,
      `\`${shown}\``,
      `Tier **${record.tier}**${limits}. Base URL: \`${baseUrl}\``,
      `Keep it secret: whoever has it spends your budget. Save it as \`${ENV_VAR}\`; the examples read it from there.`,
      '**curl**',
      '```sh',
      `curl ${baseUrl}/chat/completions \\`,
      `  -H "Authorization: Bearer $${ENV_VAR}" -H "Content-Type: application/json" \\`,
      `  -d '{"model":"${model}","messages":[{"role":"user","content":"Hello!"}]}'`,
      '```',
      '**Python** (`pip install openai`)',
      '```py',
      'import os',
      'from openai import OpenAI',
      `client = OpenAI(base_url="${baseUrl}", api_key=os.environ["${ENV_VAR}"])`,
      `r = client.chat.completions.create(model="${model}", messages=[{"role": "user", "content": "Hello!"}])`,
      'print(r.choices[0].message.content)',
      '```',
    ].join('\n');
  return {
    kind: 'key',
    content: body(
      key,
      `(shown once: copy it now, it is removed from this message in ${duration(deps.config.keyRevealMs)}):`,
    ),
    redacted: body(
      `${record.prefix}…`,
      '(removed from this message). Lost it? Use `/key rotate` to get a new one (this one then stops working).',
    ),
  };
}
