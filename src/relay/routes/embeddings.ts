import { resolveModel } from '../../domain/model-access.js';
import { estimateTextInput } from '../../domain/token-estimate.js';
import type { Services } from '../../services.js';
import type { Exchange } from '../api/exchange.js';
import { relayCall } from '../proxy.js';
import { embeddingBody, parseBody } from '../validate.js';

export function embeddings(s: Services) {
  return async (x: Exchange, raw: unknown): Promise<void> => {
    const auth = x.auth!;
    const body = parseBody(embeddingBody, raw, 'input');
    const model = resolveModel(s.config.models, auth.tier, auth.key.tier, body.model, 'embedding');
    const meter = s.meter();
    await relayCall(s, x, {
      endpoint: 'embeddings',
      path: '/embeddings',
      modelName: body.model,
      model,
      body,
      promptTokens: estimateTextInput(body.input, meter).tokens,
      meter,
      stream: false,
      maxTokensField: null,
      requestedMaxTokens: null,
      completions: 0,
    });
  };
}
