// The dashboard's usage chart: charged tokens per day, stacked by model, as inline SVG drawn on the
// server (no script, no chart library). Colours come from the stylesheet's `.s0`–`.s7` classes so
// they follow the theme; the same numbers are given as a table for screen readers and copying.
import type { UsageByModel } from '../app/usage-history.js';
import { type Html, html } from './html.js';

/** Distinct colours; further models are summed as "other" in the last one. */
const SERIES = 8;
const W = 720;
const H = 220;
const PAD = { left: 52, right: 8, top: 12, bottom: 26 };

export function compact(n: number): string {
  if (n >= 1e6) return `${Number((n / 1e6).toFixed(1))}M`;
  if (n >= 1e3) return `${Number((n / 1e3).toFixed(1))}k`;
  return String(n);
}

/** The smallest 1, 2, 2.5 or 5 × 10^k at or above `n` (so gridlines fall on round numbers). */
export function niceCeiling(n: number): number {
  if (n <= 0) return 1;
  const scale = 10 ** Math.floor(Math.log10(n));
  for (const step of [1, 2, 2.5, 5, 10]) if (step * scale >= n) return step * scale;
  return 10 * scale;
}

/** At most `SERIES` series: the biggest models, the rest summed as "other models". */
export function chartSeries(usage: UsageByModel): Array<{ name: string; tokens: number[] }> {
  const used = usage.models.filter((m) => m.total > 0);
  if (used.length <= SERIES) return used.map((m) => ({ name: m.model, tokens: m.tokens }));
  const head = used.slice(0, SERIES - 1).map((m) => ({ name: m.model, tokens: m.tokens }));
  const other = usage.days.map((_, i) => used.slice(SERIES - 1).reduce((sum, m) => sum + m.tokens[i]!, 0));
  return [...head, { name: 'other models', tokens: other }];
}

const num = (n: number) => n.toLocaleString('en-US');
const round = (n: number) => Math.round(n * 10) / 10;

function bars(usage: UsageByModel, series: Array<{ name: string; tokens: number[] }>, max: number): Html[] {
  const plotW = W - PAD.left - PAD.right;
  const plotH = H - PAD.top - PAD.bottom;
  const slot = plotW / usage.days.length;
  const out: Html[] = [];
  usage.days.forEach((day, i) => {
    let base = H - PAD.bottom;
    series.forEach((s, k) => {
      const v = s.tokens[i]!;
      if (v <= 0) return;
      const h = (v / max) * plotH;
      base -= h;
      out.push(
        html`<rect class="s${k}" x="${round(PAD.left + i * slot + slot * 0.15)}" y="${round(base)}" width="${round(slot * 0.7)}" height="${round(Math.max(h, 0.5))}"><title>${day} · ${s.name}: ${num(v)} tokens</title></rect>`,
      );
    });
  });
  return out;
}

function axes(usage: UsageByModel, max: number): Html {
  const plotW = W - PAD.left - PAD.right;
  const plotH = H - PAD.top - PAD.bottom;
  const grid = [0, 0.5, 1].map((f) => {
    const y = round(H - PAD.bottom - f * plotH);
    return html`<line class="axis" x1="${PAD.left}" x2="${W - PAD.right}" y1="${y}" y2="${y}"/><text x="${PAD.left - 6}" y="${y + 4}" text-anchor="end">${compact(max * f)}</text>`;
  });
  const n = usage.days.length;
  const slot = plotW / n;
  const labels = [0, Math.floor((n - 1) / 2), n - 1].map(
    (i) =>
      html`<text x="${round(PAD.left + i * slot + slot / 2)}" y="${H - 8}" text-anchor="middle">${usage.days[i]!.slice(5)}</text>`,
  );
  return html`${grid}${labels}`;
}

function dataTable(usage: UsageByModel, series: Array<{ name: string; tokens: number[] }>): Html {
  const rows = usage.days
    .map((day, i) => ({ day, values: series.map((s) => s.tokens[i]!) }))
    .filter((r) => r.values.some((v) => v > 0))
    .map(
      (r) =>
        html`<tr><th scope="row">${r.day}</th>${r.values.map((v) => html`<td class="num">${num(v)}</td>`)}<td class="num">${num(r.values.reduce((a, b) => a + b, 0))}</td></tr>`,
    );
  return html`<details><summary>The chart as a table</summary>
<table><caption class="sr-only">Charged tokens per day and model</caption>
<thead><tr><th scope="col">Day</th>${series.map((s) => html`<th scope="col" class="num">${s.name}</th>`)}<th scope="col" class="num">Total</th></tr></thead>
<tbody>${rows}</tbody></table></details>`;
}

export function usageChart(usage: UsageByModel): Html {
  const series = chartSeries(usage);
  const first = usage.days[0] ?? '';
  const last = usage.days.at(-1) ?? '';
  if (series.length === 0) return html`<p class="muted">No usage from ${first} to ${last}.</p>`;
  const totals = usage.days.map((_, i) => series.reduce((sum, s) => sum + s.tokens[i]!, 0));
  const max = niceCeiling(Math.max(...totals));
  const total = totals.reduce((a, b) => a + b, 0);
  return html`<figure class="chart">
<svg viewBox="0 0 ${W} ${H}" role="img" aria-labelledby="chart-title chart-desc" xmlns="http://www.w3.org/2000/svg">
<title id="chart-title">Charged tokens per day by model, ${first} to ${last}</title>
<desc id="chart-desc">${num(total)} tokens in total over ${usage.days.length} days; the busiest day used ${num(Math.max(...totals))}.</desc>
${axes(usage, max)}${bars(usage, series, max)}
</svg>
<figcaption><ul class="legend">${series.map(
    (s, k) =>
      html`<li><svg width="12" height="12" aria-hidden="true"><rect class="s${k}" width="12" height="12" rx="2"/></svg>${s.name}</li>`,
  )}</ul></figcaption>
</figure>
${dataTable(usage, series)}`;
}
