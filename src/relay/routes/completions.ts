import type { RequestHandler } from 'express';
import { resolveModel } from '../../domain/model-access.js';
import { estimateTextInput } from '../../domain/token-estimate.js';
import type { Services } from '../../services.js';
import type { AuthContext } from '../middleware/auth.js';
import { relayCall } from '../proxy.js';
import { completionBody, parseBody } from '../validate.js';

/** Legacy text completions. */
export function completions(s: Services): RequestHandler {
  return async (req, res) => {
    const auth = res.locals.auth as AuthContext;
    const body = parseBody(completionBody, req.body);
    const model = resolveModel(s.config.models, auth.tier, auth.key.tier, body.model, 'chat');
    await relayCall(
      s,
      res,
      {
        endpoint: 'completions',
        path: '/completions',
        modelName: body.model,
        model,
        body,
        promptTokens: estimateTextInput(body.prompt, s.tokenizer),
        stream: body.stream === true,
        maxTokensField: 'max_tokens',
        requestedMaxTokens: body.max_tokens ?? null,
        // best_of completions are generated (and billed) server-side even though n are returned.
        choices: Math.max(body.n ?? 1, body.best_of ?? 1),
      },
      auth,
    );
  };
}
