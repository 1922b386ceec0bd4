// The invariants every fault test checks after its load, read from the real SQLite file: one usage
// record per request the relay relayed, none for requests it refused, daily aggregates that count
// each record once, no negative charge, and a budget ledger equal to what the records charged.
import { join } from 'node:path';
import { SqliteStore } from '../../src/adapters/sqlite/sqlite-store.js';
import { BudgetCalendar } from '../../src/domain/budget-day.js';
import type { UsageRecord } from '../../src/domain/types.js';
import type { LoadKey, Shot } from '../helpers/load.js';
import type { TestRelay } from '../helpers/relay.js';

/** Answers given before a request was relayed: these never have a usage record. */
export const REFUSAL_CODES = new Set([
  'rate_limit_requests',
  'rate_limit_concurrency',
  'daily_token_budget_exceeded',
  'limiter_unavailable',
  'store_unavailable',
  'shutting_down',
]);

export interface MemberUsage {
  records: UsageRecord[];
  /** From the daily aggregates over the days the records fall on (plus today). */
  daily: { requests: number; chargedTokens: number };
  /** Budget days the member has records on (plus today), for reading ledgers. */
  days: string[];
}

const calendar = new BudgetCalendar('UTC');
export const dayOf = (d: Date): string => calendar.at(d).day;

/** Reads every member's records and aggregates through a second connection to the relay's file. */
export async function readUsage(dbFile: string, discordIds: string[]): Promise<Map<string, MemberUsage>> {
  const store = SqliteStore.open(dbFile);
  try {
    const out = new Map<string, MemberUsage>();
    for (const id of new Set(discordIds)) {
      const records = await store.listUsage(id, 1_000_000);
      const days = [...new Set([dayOf(new Date()), ...records.map((r) => dayOf(r.createdAt))])].sort();
      const rows = await store.dailyUsage({ discordId: id, fromDay: days[0]!, toDay: days.at(-1)! });
      out.set(id, {
        records,
        days,
        daily: {
          requests: rows.reduce((n, r) => n + r.requests, 0),
          chargedTokens: rows.reduce((n, r) => n + r.chargedTokens, 0),
        },
      });
    }
    return out;
  } finally {
    await store.close();
  }
}

export function errorCode(s: Shot): string | null {
  const code = (s.errorBody as { error?: { code?: unknown } } | null)?.error?.code;
  return typeof code === 'string' ? code : null;
}

/** A shot the relay answered after relaying (or starting to relay) it: it must have one record. */
export function wasRelayed(s: Shot): boolean {
  if (s.status === null || s.requestId === null) return false;
  if (s.status === 200) return true;
  return s.status !== 401 && !REFUSAL_CODES.has(errorCode(s) ?? '');
}

export const chargedSum = (records: UsageRecord[]): number => records.reduce((n, r) => n + r.chargedTokens, 0);

export interface RecordCheck {
  /** Human-readable violations; empty when every invariant held. */
  problems: string[];
  /** Records whose request id no client saw (e.g. clients that left before the response head). */
  unseen: UsageRecord[];
}

/**
 * Exactly one record per relayed shot (by x-request-id), none for refused shots, aggregates equal
 * to the records (each counted once), and every charge a non-negative integer.
 */
export function checkRecords(shots: Shot[], usage: Map<string, MemberUsage>): RecordCheck {
  const problems: string[] = [];
  const byId = new Map<string, UsageRecord[]>();
  for (const [member, u] of usage) {
    for (const r of u.records) byId.set(r.requestId, [...(byId.get(r.requestId) ?? []), r]);
    if (u.daily.requests !== u.records.length || u.daily.chargedTokens !== chargedSum(u.records)) {
      problems.push(
        `member ${member}: daily aggregates ${JSON.stringify(u.daily)} but ${u.records.length} records charging ${chargedSum(u.records)}`,
      );
    }
    for (const r of u.records) {
      if (!Number.isSafeInteger(r.chargedTokens) || r.chargedTokens < 0) {
        problems.push(`record ${r.requestId} charged ${r.chargedTokens}`);
      }
    }
  }
  const seen = new Set<string>();
  for (const s of shots) {
    if (s.requestId === null) continue;
    seen.add(s.requestId);
    const n = byId.get(s.requestId)?.length ?? 0;
    if (wasRelayed(s) && n !== 1) {
      problems.push(`relayed ${s.requestId} (status ${s.status}, stream ${s.stream}) has ${n} records`);
    }
    if (!wasRelayed(s) && n !== 0) {
      problems.push(`refused ${s.requestId} (status ${s.status} ${errorCode(s)}) has ${n} records`);
    }
  }
  for (const [id, rs] of byId) if (rs.length > 1) problems.push(`request ${id} has ${rs.length} records`);
  const unseen = [...byId.values()].flat().filter((r) => !seen.has(r.requestId));
  return { problems, unseen };
}

/** Seven members on the `free` tier and the last one on `small` (a budget the load exhausts). */
export async function issueMembers(t: TestRelay): Promise<{ keys: LoadKey[]; small: LoadKey }> {
  const keys: LoadKey[] = [];
  for (let i = 0; i < 7; i++) keys.push(await t.issue(undefined, 'free'));
  const small = await t.issue(undefined, 'small');
  keys.push(small);
  return { keys, small };
}

/** Once every relayed request is recorded and settled and the records are written: the members' usage. */
export async function settledUsage(
  t: TestRelay,
  dataDir: string,
  discordIds: string[],
): Promise<Map<string, MemberUsage>> {
  await t.relay.services.inflight.settled(Date.now() + 10_000);
  await t.relay.services.usage.flush();
  return readUsage(join(dataDir, 'guildgate.db'), discordIds);
}
