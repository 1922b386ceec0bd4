// The web's pure helpers: escaping, the usage chart, CSRF comparisons, sealing a new key for its one
// showing, and gate refusal wording.
import type { Request } from 'express';
import { describe, expect, it } from 'vitest';
import { chartSeries, compact, niceCeiling, usageChart } from '../../src/web/chart.js';
import { originCheck, sameSecret } from '../../src/web/csrf.js';
import { gateRefusal } from '../../src/web/gate-refusal.js';
import { html, trusted } from '../../src/web/html.js';
import { KeySealer } from '../../src/web/key-flash.js';
import { renderMarkdown } from '../../src/web/markdown.js';

describe('html', () => {
  it('escapes every interpolated value but keeps Html and arrays of it', () => {
    const name = `<script>alert("x")</script>&'`;
    const inner = html`<b>${name}</b>`;
    expect(html`<p title="${name}">${[inner, trusted('<i>ok</i>')]}${null}${false}</p>`.value).toBe(
      '<p title="&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;"><b>&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;</b><i>ok</i></p>',
    );
  });

  it('renders operator Markdown with raw HTML shown as text', () => {
    const out = renderMarkdown('# Title\n\n<script>alert(1)</script>\n\n- *a*').value;
    expect(out).toContain('<h1>Title</h1>');
    expect(out).toContain('&lt;script&gt;');
    expect(out).not.toContain('<script>');
    expect(out).toContain('<em>a</em>');
  });
});

describe('usage chart', () => {
  const days = ['2026-11-28', '2026-11-29', '2026-11-30'];

  it('rounds the scale up to 1, 2, 2.5 or 5 × 10^k and abbreviates labels', () => {
    expect([0, 1, 3, 7, 11, 240, 2_600, 900_000].map(niceCeiling)).toEqual([1, 1, 5, 10, 20, 250, 5_000, 1_000_000]);
    expect([0, 999, 1_500, 2_000_000].map(compact)).toEqual(['0', '999', '1.5k', '2M']);
  });

  it('keeps the seven biggest models and sums the rest as "other models"', () => {
    const models = Array.from({ length: 10 }, (_, i) => ({
      model: `m${i}`,
      tokens: [10 - i, 0, 1],
      total: 11 - i,
    }));
    const series = chartSeries({ days, models });
    expect(series).toHaveLength(8);
    expect(series.slice(0, 7).map((s) => s.name)).toEqual(['m0', 'm1', 'm2', 'm3', 'm4', 'm5', 'm6']);
    expect(series[7]).toEqual({ name: 'other models', tokens: [3 + 2 + 1, 0, 3] });
  });

  it('draws one rect per model and day with usage, escapes model names, and says so when empty', () => {
    const svg = usageChart({
      days,
      models: [
        { model: '<evil>', tokens: [5, 0, 10], total: 15 },
        { model: 'b', tokens: [0, 0, 2], total: 2 },
      ],
    }).value;
    expect(svg.match(/<rect class="s\d" x=/g)).toHaveLength(3);
    expect(svg).toContain('&lt;evil&gt;');
    expect(svg).not.toContain('<evil>');
    expect(svg).toContain('role="img"');
    expect(usageChart({ days, models: [] }).value).toContain('No usage from 2026-11-28 to 2026-11-30');
  });
});

describe('csrf helpers', () => {
  const req = (headers: Record<string, string>, protocol = 'http') =>
    ({ protocol, get: (h: string) => headers[h.toLowerCase()] }) as unknown as Request;

  it('compares secrets of any length', () => {
    expect(sameSecret('abc', 'abc')).toBe(true);
    expect(sameSecret('abc', 'abcd')).toBe(false);
    expect(sameSecret('', 'x')).toBe(false);
  });

  it('accepts a missing Origin and only the exact configured origin otherwise', () => {
    const check = originCheck('https://relay.example');
    expect(check(req({}))).toBe(true);
    expect(check(req({ origin: 'https://relay.example' }))).toBe(true);
    expect(check(req({ origin: 'https://relay.example:443.evil' }))).toBe(false);
    expect(check(req({ origin: 'null' }))).toBe(false);
    expect(check(req({ origin: 'http://relay.example' }))).toBe(false);
  });

  it("without a configured origin, compares with the request's own host", () => {
    const check = originCheck(null);
    expect(check(req({ origin: 'http://127.0.0.1:8080', host: '127.0.0.1:8080' }))).toBe(true);
    expect(check(req({ origin: 'http://evil.example', host: '127.0.0.1:8080' }))).toBe(false);
  });
});

describe('KeySealer', () => {
  it('opens what it sealed, and nothing sealed under another secret or tampered with', () => {
    const sealer = new KeySealer('s'.repeat(40));
    const box = sealer.seal('gg_secret');
    expect(box).not.toContain('gg_secret');
    expect(sealer.open(box)).toBe('gg_secret');
    expect(new KeySealer('t'.repeat(40)).open(box)).toBeNull();
    const tampered = Buffer.from(box, 'base64url');
    tampered[tampered.length - 1]! ^= 1;
    expect(sealer.open(tampered.toString('base64url'))).toBeNull();
    expect(sealer.open('')).toBeNull();
  });
});

describe('gate refusals', () => {
  it('name the gate, give the reason without Discord mentions, and say what to do', () => {
    const r = gateRefusal('missing_role', 'You need the role <@&123456789012345678> to get a key.');
    expect(r.status).toBe(403);
    expect(r.title).toBe('A required role is missing');
    expect(r.detail).toContain('role 123456789012345678');
    expect(r.detail).not.toContain('<@&');
    expect(r.detail).toMatch(/moderators/);
  });
});
