import type { RequestHandler } from 'express';
import { newId } from '../../domain/ids.js';

/** Every response names its request id, and so does every log line about it. */
export const requestId: RequestHandler = (_req, res, next) => {
  const id = newId('req');
  res.locals.requestId = id;
  res.setHeader('x-request-id', id);
  next();
};
