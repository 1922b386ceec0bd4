// `guildgate doctor`: one plain check per backing service, each bounded by a short timeout. The
// checks never put a secret in their detail; the caller passes in how to reach each service.

export interface CheckResult {
  name: string;
  ok: boolean;
  detail: string;
  /** Notes that do not fail the check (config warnings). */
  warnings?: string[];
}

const CHECK_TIMEOUT_MS = 5_000;

class TimedOut extends Error {}

/** Rejects with TimedOut after `ms`; `onLate` gets the value if it arrives after that (to close it). */
function withTimeout<T>(work: Promise<T>, ms: number, onLate?: (value: T) => unknown): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  let late = false;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      late = true;
      reject(new TimedOut(`no answer in ${ms / 1000} s`));
    }, ms);
  });
  work.then(
    (v) => {
      if (late) void Promise.resolve(onLate?.(v)).catch(() => {});
    },
    () => {},
  );
  return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
}

const reason = (err: unknown) => (err instanceof Error ? err.message : String(err));

/** A URL without user name or password, for messages. */
function withoutCredentials(url: string): string {
  try {
    const u = new URL(url);
    u.username = '';
    u.password = '';
    return u.toString().replace(/\/$/, '');
  } catch {
    return '(unparseable URL)';
  }
}

export function checkConfig(source: string | null, warnings: string[]): CheckResult {
  return { name: 'config', ok: true, detail: `valid (${source ?? 'defaults, no file'})`, warnings };
}

/** Opens the store, pings it and closes it. `label` is e.g. `sqlite at data/guildgate.db`. */
export async function checkStore(
  label: string,
  open: () => Promise<{ ping(): Promise<void>; close(): Promise<void> }>,
  timeoutMs = CHECK_TIMEOUT_MS,
): Promise<CheckResult> {
  try {
    const store = await withTimeout(open(), timeoutMs, (s) => s.close());
    try {
      await withTimeout(store.ping(), timeoutMs);
    } finally {
      await store.close().catch(() => {});
    }
    return { name: 'store', ok: true, detail: label };
  } catch (err) {
    return { name: 'store', ok: false, detail: `cannot use ${label}: ${reason(err)}` };
  }
}

/** `ping` connects, sends PING and disconnects. `label` is the redacted URL. */
export async function checkRedis(
  label: string,
  ping: (timeoutMs: number) => Promise<void>,
  timeoutMs = CHECK_TIMEOUT_MS,
): Promise<CheckResult> {
  try {
    await withTimeout(ping(timeoutMs), timeoutMs);
    return { name: 'redis', ok: true, detail: `PING answered at ${label}` };
  } catch (err) {
    return { name: 'redis', ok: false, detail: `cannot reach Redis at ${label} (${reason(err)})` };
  }
}

async function get(url: string, authorization: string | undefined, timeoutMs: number): Promise<number> {
  const res = await fetch(url, {
    headers: authorization ? { authorization } : {},
    signal: AbortSignal.timeout(timeoutMs),
  });
  await res.body?.cancel().catch(() => {});
  return res.status;
}

function unreachable(target: string, err: unknown): string {
  const e = err as { name?: string; cause?: { code?: string; message?: string } };
  const why = e.name === 'TimeoutError' ? 'no answer in time' : (e.cause?.code ?? e.cause?.message ?? reason(err));
  return `cannot reach ${target} (${why})`;
}

/** `GET <baseUrl>/models` with the provider key. */
export async function checkUpstream(
  name: string,
  upstream: { baseUrl: string; apiKeyEnv?: string | undefined },
  apiKey: string | undefined,
  timeoutMs = CHECK_TIMEOUT_MS,
): Promise<CheckResult> {
  const check = `upstream ${name}`;
  const base = upstream.baseUrl.replace(/\/+$/, '');
  const shown = withoutCredentials(base);
  try {
    const status = await get(`${base}/models`, apiKey ? `Bearer ${apiKey}` : undefined, timeoutMs);
    if (status >= 200 && status < 300) return { name: check, ok: true, detail: `${shown}/models answered ${status}` };
    if (status === 401 || status === 403) {
      const detail = upstream.apiKeyEnv
        ? `the provider refused the key in ${upstream.apiKeyEnv}`
        : `the provider refused the request without a key (${status}); set apiKeyEnv`;
      return { name: check, ok: false, detail };
    }
    return { name: check, ok: false, detail: `${shown}/models answered ${status}` };
  } catch (err) {
    return { name: check, ok: false, detail: unreachable(shown, err) };
  }
}

/** `GET <apiBaseUrl>/v10/gateway/bot` with the bot token. */
export async function checkDiscordBot(
  apiBaseUrl: string,
  token: string,
  timeoutMs = CHECK_TIMEOUT_MS,
): Promise<CheckResult> {
  const base = apiBaseUrl.replace(/\/+$/, '');
  const shown = withoutCredentials(base);
  try {
    const status = await get(`${base}/v10/gateway/bot`, `Bot ${token}`, timeoutMs);
    if (status >= 200 && status < 300)
      return { name: 'discord', ok: true, detail: 'Discord accepted DISCORD_BOT_TOKEN' };
    if (status === 401 || status === 403)
      return { name: 'discord', ok: false, detail: 'Discord refused DISCORD_BOT_TOKEN' };
    return { name: 'discord', ok: false, detail: `${shown}/v10/gateway/bot answered ${status}` };
  } catch (err) {
    return { name: 'discord', ok: false, detail: unreachable(shown, err) };
  }
}

/** Config loading already refuses a short session secret, so reaching here means it is consistent. */
export function checkWebSecrets(): CheckResult {
  return {
    name: 'web',
    ok: true,
    detail: 'DISCORD_CLIENT_SECRET and GUILDGATE_SESSION_SECRET (32+ characters) are set',
  };
}

/** Replaces every secret value that might have slipped into a detail with `***`. */
export function scrub(results: CheckResult[], secrets: Array<string | undefined>): CheckResult[] {
  const values = secrets.filter((s): s is string => typeof s === 'string' && s.length >= 4);
  const clean = (text: string) => values.reduce((t, s) => t.split(s).join('***'), text);
  return results.map((r) => ({
    ...r,
    detail: clean(r.detail),
    ...(r.warnings ? { warnings: r.warnings.map(clean) } : {}),
  }));
}
