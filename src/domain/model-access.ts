// Which public models a tier may call.
import { InvalidRequestError, NotFoundError, PermissionError } from './errors.js';

export interface ModelEntry {
  kind: 'chat' | 'embedding';
}

export function tierAllows(tier: { models: string[] }, model: string): boolean {
  return tier.models.includes('*') || tier.models.includes(model);
}

/** The first configured chat model a tier may call, for quick-start examples; null when there is none. */
export function firstChatModel(models: Record<string, ModelEntry>, tier: { models: string[] }): string | null {
  return Object.entries(models).find(([name, m]) => m.kind === 'chat' && tierAllows(tier, name))?.[0] ?? null;
}

/** The configured model a request may use, or the error the client gets. */
export function resolveModel<M extends ModelEntry>(
  models: Record<string, M>,
  tier: { models: string[] },
  tierName: string,
  name: string,
  kind: ModelEntry['kind'],
): M {
  const m = Object.hasOwn(models, name) ? models[name] : undefined;
  if (!m) {
    throw new NotFoundError(
      `The model '${name}' does not exist or you do not have access to it.`,
      'model_not_found',
      'model',
    );
  }
  if (!tierAllows(tier, name)) {
    throw new PermissionError(
      `Your key's tier (${tierName}) may not use the model '${name}'.`,
      'model_not_allowed',
      'model',
    );
  }
  if (m.kind !== kind) {
    const other = kind === 'chat' ? 'an embedding' : 'a chat';
    throw new InvalidRequestError(
      `The model '${name}' is ${other} model and does not serve this endpoint.`,
      'model',
      'wrong_model_kind',
    );
  }
  return m;
}
