// The member's whole web journey in a real headless browser (Debian's Chromium through
// playwright-core; never a downloaded browser): landing → Sign in with Discord → the fake's consent
// page → dashboard → create a key → use it with the official openai client → usage on the
// dashboard → rotate → revoke → export → delete → sign in again to an empty dashboard. Any console
// error or page error fails the test, and so does any request leaving loopback (Discord's avatar
// CDN is answered locally). A screenshot per page goes to a temp artifacts dir and every step's
// duration is printed. Without /usr/bin/chromium it says so loudly and skips (CI installs it).
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findKeysInText, hashKey } from '../../src/domain/keys.js';
import { startWebStack, type WebStack } from '../helpers/web.js';

const CHROMIUM = '/usr/bin/chromium';
/** One folder per run (concurrent runs must not wipe each other's screenshots); never committed. */
const ARTIFACTS = join(
  tmpdir(),
  'guildgate-web-screens',
  `${new Date().toISOString().replace(/[:.]/g, '-')}-${process.pid}`,
);
const haveChromium = existsSync(CHROMIUM);
const PNG_1PX = Buffer.from(
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==',
  'base64',
);
if (!haveChromium) {
  console.warn(
    `!!! [web-browser] SKIPPED: ${CHROMIUM} is missing — install Debian's chromium (apt-get install chromium; .ci/run does) to run the browser flow !!!`,
  );
}

describe.skipIf(!haveChromium)('the dashboard in headless Chromium', () => {
  let s: WebStack;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  const problems: string[] = [];
  const cdnRequests: string[] = [];
  const durations: Array<[string, number]> = [];
  let shots = 0;
  /** Time spent taking screenshots per step (reported apart from the step's own time). */
  let shotMs = 0;

  beforeAll(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    s = await startWebStack({ consentPage: true });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-dev-shm-usage',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--no-first-run',
      ],
    });
    context = await browser.newContext({
      acceptDownloads: true,
      viewport: { width: 1100, height: 900 },
      // The "Copy key" button writes to the clipboard; granted so the test can read it back.
      permissions: ['clipboard-read', 'clipboard-write'],
    });
    // Hermetic: loopback only. Discord's CDN (avatars) gets a stand-in image; anything else is a failure.
    await context.route('**/*', (route) => {
      const url = new URL(route.request().url());
      if (url.hostname === '127.0.0.1') return route.continue();
      if (url.hostname === 'cdn.discordapp.com') {
        cdnRequests.push(url.href);
        return route.fulfill({ status: 200, contentType: 'image/png', body: PNG_1PX });
      }
      problems.push(`request outside the test: ${url.href}`);
      return route.abort();
    });
    page = await context.newPage();
    page.on('console', (msg) => {
      if (msg.type() === 'error') problems.push(`console error on ${page.url()}: ${msg.text()}`);
    });
    page.on('pageerror', (err) => problems.push(`page error on ${page.url()}: ${err.message}`));
    page.setDefaultTimeout(10_000);
  });

  afterAll(async () => {
    await browser?.close();
    await s?.stop();
    if (cdnRequests.length) console.log(`[web-browser] Discord CDN requests answered locally: ${cdnRequests.length}`);
    console.log(`[web-browser] screenshots: ${ARTIFACTS} (${shots} files, ${shotMs} ms taking them)`);
    console.log(
      `[web-browser] step durations (ms): ${durations.map(([n, ms]) => `${n}=${ms}`).join(', ')}; total ${durations.reduce((a, [, ms]) => a + ms, 0)}`,
    );
  });

  async function shot(name: string): Promise<void> {
    shots += 1;
    const started = Date.now();
    await page.screenshot({ path: join(ARTIFACTS, `${String(shots).padStart(2, '0')}-${name}.png`), fullPage: true });
    shotMs += Date.now() - started;
  }

  async function step<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const started = Date.now();
    const shotsBefore = shotMs;
    const out = await fn();
    const ms = Date.now() - started;
    const inShots = shotMs - shotsBefore;
    durations.push([name, ms - inShots]);
    console.log(`[web-browser] ${name}: ${ms - inShots} ms (+ ${inShots} ms screenshots)`);
    expect(problems, `browser errors during "${name}"`).toEqual([]);
    return out;
  }

  async function status(key: string): Promise<number> {
    try {
      await s.relay.client(key).models.list();
      return 200;
    } catch (err) {
      if (err instanceof OpenAI.APIError && err.status) return err.status;
      throw err;
    }
  }

  /** Keys anywhere in the page's HTML (the new key sits in a read-only input's value). */
  const shownKeys = async () => findKeysInText(await page.content());

  async function signInThroughConsent(): Promise<void> {
    await page
      .getByRole('link', { name: /sign in with discord/i })
      .first()
      .click();
    await page.waitForURL(`${s.oauth.url}/oauth2/authorize?**`);
    await shot('discord-consent');
    await page.getByRole('button', { name: 'Authorize' }).click();
    await page.waitForURL(`${s.url}/dashboard`);
  }

  it('landing → sign in → key → use → usage → rotate → revoke → export → delete → empty again', {
    timeout: 90_000,
  }, async () => {
    const flowStarted = Date.now();
    const user = s.newMember({ username: 'browser-bea' });

    await step('landing', async () => {
      await page.goto(`${s.url}/`);
      await expect.poll(() => page.getByRole('link', { name: /sign in with discord/i }).count()).toBeGreaterThan(0);
      await shot('landing');
    });

    await step('sign in with Discord (consent page)', async () => {
      await signInThroughConsent();
      await expect.poll(() => page.locator('body').innerText()).toContain('browser-bea');
      await shot('dashboard-signed-in');
    });

    const key = await step('create key', async () => {
      await page.getByRole('button', { name: 'Create my key' }).click();
      await page.waitForURL(`${s.url}/dashboard`);
      const shown = await page.getByLabel('API key (shown once)').inputValue();
      expect(findKeysInText(shown)).toEqual([shown]);
      expect(await shownKeys()).toEqual([shown]);
      // As a member would take it: the Copy key button.
      await page.getByRole('button', { name: 'Copy key' }).click();
      await expect.poll(() => page.getByRole('button', { name: 'Copied' }).count()).toBe(1);
      expect(await page.evaluate<string>('navigator.clipboard.readText()')).toBe(shown);
      await shot('key-shown');
      return shown;
    });

    const used = await step('call the relay with the key (openai client)', async () => {
      const chat = await s.relay.client(key).chat.completions.create({
        model: 'gpt-4o-mini',
        messages: [{ role: 'user', content: 'hello from the browser test' }],
      });
      expect(chat.choices[0]?.message.content).toBeTruthy();
      return chat.usage?.total_tokens ?? 0;
    });
    expect(used).toBeGreaterThan(0);

    await step('reload: usage today and in the chart', async () => {
      // Usage is recorded every 50 ms in tests; reload until the chart has today's bar.
      const today = new Date().toISOString().slice(0, 10);
      const bar = page.locator('figure.chart svg rect title', { hasText: today });
      await expect
        .poll(
          async () => {
            await page.reload();
            return bar.count();
          },
          { timeout: 5_000 },
        )
        .toBeGreaterThan(0);
      expect(await shownKeys(), 'the key is shown once only').toEqual([]);
      const meter = page.getByRole('meter', { name: 'Tokens used today' });
      expect(Number(await meter.getAttribute('value'))).toBe(used);
      expect(await page.locator('dd', { has: meter }).innerText()).toContain(`${used.toLocaleString('en-US')} of`);
      expect(await bar.first().textContent()).toContain(`gpt-4o-mini: ${used.toLocaleString('en-US')} tokens`);
      const chart = page.getByRole('img', { name: /charged tokens per day/i });
      expect(await chart.locator('desc').textContent()).toContain(`${used.toLocaleString('en-US')} tokens in total`);
      await shot('usage');
    });

    const rotated = await step('rotate (new key once, old key refused)', async () => {
      await page.getByRole('button', { name: 'Rotate key' }).click();
      await page.waitForURL(`${s.url}/dashboard`);
      const keys = await shownKeys();
      expect(keys).toEqual([await page.getByLabel('API key (shown once)').inputValue()]);
      expect(keys[0]).not.toBe(key);
      await shot('rotated');
      await expect.poll(() => status(key), { timeout: 1_000, interval: 20 }).toBe(401);
      expect(await status(keys[0]!)).toBe(200);
      await page.reload();
      expect(await shownKeys()).toEqual([]);
      return keys[0]!;
    });

    await step('revoke', async () => {
      await page.getByRole('button', { name: 'Revoke key' }).click();
      await page.waitForURL(`${s.url}/dashboard`);
      await expect.poll(() => page.getByRole('button', { name: 'Create my key' }).count()).toBe(1);
      await expect.poll(() => status(rotated), { timeout: 1_000, interval: 20 }).toBe(401);
      await shot('revoked');
    });

    await step('export (download)', async () => {
      const downloading = page.waitForEvent('download');
      await page.getByRole('link', { name: /export my data/i }).click();
      const download = await downloading;
      expect(download.suggestedFilename()).toMatch(/\.json$/);
      const path = await download.path();
      const text = readFileSync(path, 'utf8');
      const data = JSON.parse(text) as unknown;
      expect(JSON.stringify(data)).toContain(user.id);
      for (const k of [key, rotated]) {
        expect(text).not.toContain(k);
        expect(text).not.toContain(hashKey(k));
      }
    });

    await step('delete (type DELETE)', async () => {
      await page.getByLabel('Type DELETE to confirm').fill('DELETE');
      await page.getByRole('button', { name: 'Delete my data' }).click();
      await page.waitForURL(`${s.url}/`);
      await expect.poll(() => page.getByRole('status').innerText()).toMatch(/data was deleted/i);
      await shot('deleted');
      const store = s.relay.relay.services.store;
      expect(await store.getUser(user.id)).toBeNull();
      expect(await store.listKeys({ discordId: user.id })).toEqual([]);
    });

    await step('sign in again: an empty dashboard', async () => {
      await page.goto(`${s.url}/`);
      await signInThroughConsent();
      expect(await shownKeys()).toEqual([]);
      const text = await page.locator('body').innerText();
      expect(text).not.toContain(key.slice(0, 9));
      expect(text).not.toContain(rotated.slice(0, 9));
      await expect.poll(() => page.getByRole('button', { name: 'Create my key' }).count()).toBe(1);
      // The usage history is gone (today's budget stays spent by design: deleting must not refill it).
      expect(await page.getByRole('img', { name: /charged tokens per day/i }).count()).toBe(0);
      expect(text).toMatch(/No usage from/);
      await shot('empty-again');
    });

    expect(problems).toEqual([]);
    const total = Date.now() - flowStarted;
    console.log(`[web-browser] whole flow: ${total} ms`);
    expect(total).toBeLessThan(60_000);
  });
});
