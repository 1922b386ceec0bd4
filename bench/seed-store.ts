// `npm run bench:seed -- --keys 1000000 --rows 10000000 --file PATH`: builds a big SQLite store for
// bench/store.ts. The schema comes from the store's own migrations; the rows are written straight
// through better-sqlite3 in large transactions with the secondary indexes dropped and rebuilt after,
// which is minutes instead of hours. See README.md ("Store maintenance").
import { randomBytes } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { parseArgs } from 'node:util';
import Database from 'better-sqlite3';
import { SqliteStore } from '../src/adapters/sqlite/sqlite-store.js';

const DAY_MS = 86_400_000;
const CHUNK = 100_000;
const MODELS = ['gpt-4o-mini', 'gpt-4o', 'llama-3.1-70b', 'llama-3.1-8b', 'mistral-large', 'text-embedding-3-small'];
const ENDPOINTS = ['chat.completions', 'chat.completions', 'chat.completions', 'completions', 'embeddings'];

const { values } = parseArgs({
  options: {
    keys: { type: 'string', default: '1000000' },
    rows: { type: 'string', default: '10000000' },
    file: { type: 'string' },
    /** Days of history; those past the retention are what the purge removes. */
    days: { type: 'string', default: '100' },
    'retention-days': { type: 'string', default: '90' },
    /** Share of all rows that fall on the last day ("today", a busy day). */
    'today-share': { type: 'string', default: '0.05' },
  },
});
if (values.file === undefined) throw new Error('--file PATH is required');
if (existsSync(values.file)) throw new Error(`${values.file} exists; seed a new file`);
const file = values.file;
const keyCount = Number(values.keys);
const rowCount = Number(values.rows);
const days = Number(values.days);
const retentionDays = Number(values['retention-days']);
const todayShare = Number(values['today-share']);
const now = Date.now();
// History fills whole UTC days before today; today's rows fall between midnight (UTC) and now.
const todayStart = Math.floor(now / DAY_MS) * DAY_MS;
const start = todayStart - (days - 1) * DAY_MS;

const t0 = performance.now();
const lap = (what: string) => console.error(`${((performance.now() - t0) / 1000).toFixed(1)} s  ${what}`);

// The real schema, then a plain connection tuned for bulk loading (no fsync, big cache).
await SqliteStore.open(file, { checkpoints: false }).close();
const db = new Database(file);
db.pragma('journal_mode = OFF');
db.pragma('synchronous = OFF');
db.pragma('cache_size = -1000000');
db.pragma('temp_store = MEMORY');

const secondary = db
  .prepare<[], { name: string; sql: string }>(
    `SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL
      AND tbl_name IN ('keys', 'usage_requests', 'usage_daily')`,
  )
  .all();
for (const { name } of secondary) db.exec(`DROP INDEX ${name}`);

const snowflake = (i: number): string => String(300_000_000_000_000_000n + BigInt(i) * 7_919n);
/** The shape of newId(): `kind_` + base64url(48-bit ms + 72 random bits), here at a given time. */
const idBuf = Buffer.alloc(15);
const random = randomBytes(9 * 65_536);
let randomAt = 0;
function idAt(kind: string, ms: number): string {
  idBuf.writeUIntBE(ms, 0, 6);
  if (randomAt + 9 > random.length) {
    randomBytes(random.length).copy(random);
    randomAt = 0;
  }
  random.copy(idBuf, 6, randomAt, randomAt + 9);
  randomAt += 9;
  return `${kind}_${idBuf.toString('base64url')}`;
}

// Users and keys: one user per key, created over the history window.
const keyIds: string[] = new Array(keyCount);
const insertUser = db.prepare('INSERT INTO users (discord_id, created_at) VALUES (?, ?)');
const insertKey = db.prepare(
  `INSERT INTO keys (id, hash, prefix, discord_id, tier, status, created_at) VALUES (?, ?, ?, ?, 'free', 'active', ?)`,
);
const seedUsers = db.transaction((from: number, to: number) => {
  for (let i = from; i < to; i++) {
    const created = start + Math.floor((i / keyCount) * (now - start));
    const id = idAt('key', created);
    keyIds[i] = id;
    insertUser.run(snowflake(i), created);
    insertKey.run(id, randomBytes(32).toString('hex'), `gg_${id.slice(-4)}`, snowflake(i), created);
  }
});
for (let i = 0; i < keyCount; i += CHUNK) seedUsers(i, Math.min(keyCount, i + CHUNK));
lap(`${keyCount} users and keys`);

// Request records in time order (as the relay writes them): spread over every day, a busier last
// day, users drawn with a skew (a few heavy users, a long tail), so most users appear on some day.
const insertRequest = db.prepare(
  `INSERT INTO usage_requests (request_id, key_id, discord_id, model, upstream, endpoint, prompt_tokens,
    completion_tokens, charged_tokens, estimated, status, http_status, latency_ms, stream, created_at)
  VALUES (?, ?, ?, ?, 'openai', ?, ?, ?, ?, 0, ?, ?, ?, ?, ?)`,
);
const todayRows = Math.floor(rowCount * todayShare);
const historyRows = rowCount - todayRows;
const historyMs = todayStart - start;
const seedRequests = db.transaction((from: number, to: number) => {
  for (let i = from; i < to; i++) {
    const at =
      i < historyRows
        ? start + Math.floor((i / historyRows) * historyMs)
        : todayStart + Math.floor(((i - historyRows) / todayRows) * (now - todayStart));
    const user = Math.floor(keyCount * Math.random() ** 2);
    const model = MODELS[Math.floor(MODELS.length * Math.random() ** 1.5)]!;
    const prompt = 20 + Math.floor(Math.random() * 2_000);
    const completion = Math.floor(Math.random() * 800);
    const failed = Math.random() < 0.02;
    insertRequest.run(
      idAt('req', at),
      keyIds[user]!,
      snowflake(user),
      model,
      ENDPOINTS[i % ENDPOINTS.length]!,
      prompt,
      completion,
      prompt + completion,
      failed ? 'upstream_error' : 'ok',
      failed ? 502 : 200,
      100 + Math.floor(Math.random() * 3_000),
      i % 3 === 0 ? 1 : 0,
      at,
    );
  }
});
for (let i = 0; i < rowCount; i += CHUNK) {
  seedRequests(i, Math.min(rowCount, i + CHUNK));
  if ((i / CHUNK) % 10 === 9) lap(`${i + CHUNK} request records`);
}
lap(`${rowCount} request records`);

// Daily aggregates from the records (budget days in UTC), as the flushes would have built them.
db.exec(`
  INSERT INTO usage_daily (day, discord_id, model, requests, prompt_tokens, completion_tokens, charged_tokens)
  SELECT date(created_at / 1000, 'unixepoch'), discord_id, model, COUNT(*), SUM(prompt_tokens),
    SUM(completion_tokens), SUM(charged_tokens)
  FROM usage_requests GROUP BY 1, 2, 3
`);
lap('daily aggregates');
for (const { name, sql } of secondary) {
  db.exec(sql);
  lap(`index ${name}`);
}
db.pragma('journal_mode = WAL');
db.close();

const count = (sql: string) => {
  const ro = new Database(file, { readonly: true });
  try {
    return ro.prepare(sql).pluck().get() as number;
  } finally {
    ro.close();
  }
};
const expired = count(`SELECT COUNT(*) FROM usage_requests WHERE created_at < ${now - retentionDays * DAY_MS}`);
const dailyToday = count(`SELECT COUNT(*) FROM usage_daily WHERE day = '${new Date(now).toISOString().slice(0, 10)}'`);
console.log(
  JSON.stringify({
    file,
    bytes: statSync(file).size,
    keys: keyCount,
    rows: rowCount,
    expiredRows: expired,
    retentionDays,
    dailyRowsToday: dailyToday,
    seconds: Math.round((performance.now() - t0) / 100) / 10,
  }),
);
