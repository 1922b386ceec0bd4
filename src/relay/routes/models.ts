import type { RequestHandler } from 'express';
import { NotFoundError } from '../../domain/errors.js';
import { tierAllows } from '../../domain/model-access.js';
import type { Services } from '../../services.js';
import type { AuthContext } from '../middleware/auth.js';

/** Stable `created` timestamp: when this process started. */
const CREATED = Math.floor(Date.now() / 1000);

function modelObject(id: string, ownedBy: string) {
  return { id, object: 'model', created: CREATED, owned_by: ownedBy };
}

export function listModels(s: Services): RequestHandler {
  return (_req, res) => {
    const { tier } = res.locals.auth as AuthContext;
    const data = Object.entries(s.config.models)
      .filter(([id]) => tierAllows(tier, id))
      .map(([id, m]) => modelObject(id, m.ownedBy));
    res.json({ object: 'list', data });
  };
}

export function retrieveModel(s: Services): RequestHandler {
  return (req, res) => {
    const { tier } = res.locals.auth as AuthContext;
    const id = ([] as string[]).concat(req.params.id as string | string[]).join('/');
    const m = Object.hasOwn(s.config.models, id) ? s.config.models[id] : undefined;
    if (!m || !tierAllows(tier, id)) {
      throw new NotFoundError(
        `The model '${id}' does not exist or you do not have access to it.`,
        'model_not_found',
        'model',
      );
    }
    res.json(modelObject(id, m.ownedBy));
  };
}
