import type { RequestHandler } from 'express';
import { resolveModel } from '../../domain/model-access.js';
import { estimateTextInput } from '../../domain/token-estimate.js';
import type { Services } from '../../services.js';
import type { AuthContext } from '../middleware/auth.js';
import { relayCall } from '../proxy.js';
import { embeddingBody, parseBody } from '../validate.js';

export function embeddings(s: Services): RequestHandler {
  return async (req, res) => {
    const auth = res.locals.auth as AuthContext;
    const body = parseBody(embeddingBody, req.body, 'input');
    const model = resolveModel(s.config.models, auth.tier, auth.key.tier, body.model, 'embedding');
    const meter = s.meter();
    await relayCall(s, res, {
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
