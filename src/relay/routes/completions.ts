import { resolveModel } from '../../domain/model-access.js';
import { estimateTextInput } from '../../domain/token-estimate.js';
import type { Services } from '../../services.js';
import type { Exchange } from '../api/exchange.js';
import { relayCall } from '../proxy.js';
import { completionBody, parseBody } from '../validate.js';

/** Legacy text completions. */
export function completions(s: Services) {
  return async (x: Exchange, raw: unknown): Promise<void> => {
    const auth = x.auth!;
    const body = parseBody(completionBody, raw, 'prompt');
    const model = resolveModel(s.config.models, auth.tier, auth.key.tier, body.model, 'chat');
    const meter = s.meter();
    const prompt = estimateTextInput(body.prompt, meter);
    await relayCall(s, x, {
      endpoint: 'completions',
      path: '/completions',
      modelName: body.model,
      model,
      body,
      promptTokens: prompt.tokens + meter.json(body.suffix),
      meter,
      stream: body.stream === true,
      maxTokensField: 'max_tokens',
      requestedMaxTokens: body.max_tokens ?? null,
      // Every prompt gets its own completions, and best_of of them are generated (and billed)
      // server-side even though n are returned.
      completions: prompt.inputs * Math.max(body.n ?? 1, body.best_of ?? 1),
    });
  };
}
