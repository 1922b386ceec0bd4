import { NotFoundError } from '../../domain/errors.js';
import { tierAllows } from '../../domain/model-access.js';
import type { Services } from '../../services.js';
import type { Exchange } from '../api/exchange.js';
import { writeJson } from '../api/respond.js';

/** Stable `created` timestamp: when this process started. */
const CREATED = Math.floor(Date.now() / 1000);

function modelObject(id: string, ownedBy: string) {
  return { id, object: 'model', created: CREATED, owned_by: ownedBy };
}

export function listModels(s: Services) {
  return (x: Exchange): void => {
    const { tier } = x.auth!;
    const data = Object.entries(s.config.models)
      .filter(([id]) => tierAllows(tier, id))
      .map(([id, m]) => modelObject(id, m.ownedBy));
    writeJson(x, 200, { object: 'list', data });
  };
}

export function retrieveModel(s: Services) {
  return (x: Exchange, id: string): void => {
    const { tier } = x.auth!;
    const m = Object.hasOwn(s.config.models, id) ? s.config.models[id] : undefined;
    if (!m || !tierAllows(tier, id)) {
      throw new NotFoundError(
        `The model '${id}' does not exist or you do not have access to it.`,
        'model_not_found',
        'model',
      );
    }
    writeJson(x, 200, modelObject(id, m.ownedBy));
  };
}
