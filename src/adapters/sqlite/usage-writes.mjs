// The usage batch write (request records plus their daily aggregates), in one place for both
// connections that run it: the writer thread's (writer-worker.mjs) and, for in-memory stores or a
// writer thread that died, the store's own. Plain JavaScript so the worker can load it from src/
// (tsx, tests) and dist/ alike; sqlite-store.ts imports it by URL (see UsageWrites there).

/**
 * @typedef {[string, string, string, string, string | null, string, number, number, number, number, string, number, number, number, number]} UsageParams
 *   A record in the column order of the usage_requests INSERT.
 * @typedef {{ params: UsageParams, day: string }} UsageRow  A record and its aggregate's day.
 */

// Indexes into UsageParams.
const DISCORD_ID = 2;
const MODEL = 3;
const PROMPT = 6;
const COMPLETION = 7;
const CHARGED = 8;

/**
 * Prepares the batch write on `db`. The returned function writes a batch in one IMMEDIATE
 * transaction: all of it or, when it throws, nothing.
 * @param {import('better-sqlite3').Database} db
 * @returns {(rows: UsageRow[]) => void}
 */
export function prepareUsageWrite(db) {
  const insertRequest = db.prepare(
    `INSERT OR IGNORE INTO usage_requests (request_id, key_id, discord_id, model, upstream, endpoint, prompt_tokens,
      completion_tokens, charged_tokens, estimated, status, http_status, latency_ms, stream, created_at)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
  );
  const addDaily = db.prepare(
    `INSERT INTO usage_daily (day, discord_id, model, requests, prompt_tokens, completion_tokens, charged_tokens)
    VALUES (?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (day, discord_id, model) DO UPDATE SET
      requests = requests + excluded.requests,
      prompt_tokens = prompt_tokens + excluded.prompt_tokens,
      completion_tokens = completion_tokens + excluded.completion_tokens,
      charged_tokens = charged_tokens + excluded.charged_tokens`,
  );
  const write = db.transaction((/** @type {UsageRow[]} */ rows) => {
    // Summed here so a batch costs one aggregate upsert per (day, user, model), not one per record.
    const daily = new Map();
    for (const { params: p, day } of rows) {
      // Already stored (a retried batch, or twice in this one): counted the first time, not again.
      if (insertRequest.run(...p).changes === 0) continue;
      const group = `${day}\u0000${p[DISCORD_ID]}\u0000${p[MODEL]}`;
      let d = daily.get(group);
      if (!d) {
        d = [day, p[DISCORD_ID], p[MODEL], 0, 0, 0, 0];
        daily.set(group, d);
      }
      d[3]++;
      d[4] += p[PROMPT];
      d[5] += p[COMPLETION];
      d[6] += p[CHARGED];
    }
    for (const d of daily.values()) addDaily.run(...d);
  });
  // IMMEDIATE: the write lock is taken (or waited for) at BEGIN, before anything is read.
  return (rows) => write.immediate(rows);
}
