// Relays a JSON answer: read whole (bounded), checked to be a JSON object, passed through byte for
// byte; its usage read from the provider's `usage`, or estimated from the produced text.
import type { UpstreamResponse } from '../domain/ports.js';
import type { Exchange } from './api/exchange.js';
import { writeHead, writeJson } from './api/respond.js';
import { errorBody } from './errors.js';
import type { RelayCall, Relayed } from './relay-call.js';
import { bodyError, MAX_BUFFERED_BODY, parseObject, producedText, readUsage } from './upstream-answer.js';

export async function relayJson(x: Exchange, r: UpstreamResponse, call: RelayCall): Promise<Relayed> {
  const raw = await r.read(MAX_BUFFERED_BODY).catch((err) => {
    throw bodyError(err);
  });
  const json = parseObject(raw.toString('utf8'));
  if (!json) {
    writeJson(
      x,
      502,
      errorBody('The upstream provider sent an invalid JSON response.', 'api_error', 'bad_upstream_response'),
    );
    return { status: 'upstream_error', httpStatus: 502, promptTokens: 0, completionTokens: 0, estimated: false };
  }
  writeHead(x, 200, ['content-type', 'application/json', 'content-length', String(raw.length)]);
  x.res.end(raw);
  const usage = readUsage(json);
  if (usage) {
    return {
      status: 'ok',
      httpStatus: 200,
      promptTokens: usage.prompt,
      completionTokens: usage.completion,
      estimated: false,
    };
  }
  return {
    status: 'ok',
    httpStatus: 200,
    promptTokens: call.promptTokens,
    completionTokens: call.meter.text(producedText(json)),
    estimated: true,
  };
}
