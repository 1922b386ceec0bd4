// Usage records for tests that seed the store: a plain, successful chat completion charging
// `chargedTokens` (all prompt), with the fields a test cares about given and the rest fixed.
import type { UsageRecord } from '../../src/domain/types.js';

export function usageRecord(
  r: Partial<UsageRecord> & Pick<UsageRecord, 'discordId' | 'createdAt' | 'chargedTokens'>,
): UsageRecord {
  return {
    requestId: `req_${Math.random().toString(36).slice(2)}`,
    keyId: 'key_x',
    model: 'gpt-4o-mini',
    upstream: 'up',
    endpoint: 'chat.completions',
    promptTokens: r.chargedTokens,
    completionTokens: 0,
    estimated: false,
    status: 'ok',
    httpStatus: 200,
    latencyMs: 5,
    stream: false,
    ...r,
  };
}
