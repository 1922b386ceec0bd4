import { resolveModel } from '../../domain/model-access.js';
import { estimateChatPrompt } from '../../domain/token-estimate.js';
import type { Services } from '../../services.js';
import type { Exchange } from '../api/exchange.js';
import { relayCall } from '../proxy.js';
import { chatBody, parseBody } from '../validate.js';

export function chatCompletions(s: Services) {
  return async (x: Exchange, raw: unknown): Promise<void> => {
    const auth = x.auth!;
    const body = parseBody(chatBody, raw, 'messages');
    const model = resolveModel(s.config.models, auth.tier, auth.key.tier, body.model, 'chat');
    const caps = [body.max_tokens, body.max_completion_tokens].filter((n): n is number => typeof n === 'number');
    const meter = s.meter();
    await relayCall(s, x, {
      endpoint: 'chat.completions',
      path: '/chat/completions',
      modelName: body.model,
      model,
      body,
      promptTokens: estimateChatPrompt(body, meter, { imageTokens: model.imageTokens }),
      meter,
      stream: body.stream === true,
      maxTokensField: model.maxTokensParam,
      requestedMaxTokens: caps.length ? Math.min(...caps) : null,
      completions: body.n ?? 1,
    });
  };
}
