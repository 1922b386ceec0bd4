// Summarises a V8 CPU profile (`node --cpu-prof`) as text: where the time went by function and by
// file (self time), and the inclusive time of the project's own functions; with --tree, the call tree
// top down (siblings of the same function merged, branches under the threshold left out). Usage:
//   node bench/lib/cpuprofile-summary.mjs PROFILE.cpuprofile [rows] [--tree[=MIN_PERCENT]]
import { readFileSync } from 'node:fs';

const args = process.argv.slice(2);
const treeArg = args.find((a) => a.startsWith('--tree'));
const [file, rowsArg] = args.filter((a) => a !== treeArg);
if (!file) {
  console.error('usage: cpuprofile-summary.mjs PROFILE.cpuprofile [rows] [--tree[=MIN_PERCENT]]');
  process.exit(2);
}
const rows = Number(rowsArg ?? 30);
const profile = JSON.parse(readFileSync(file, 'utf8'));
const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
const parent = new Map();
for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

const selfUs = new Map();
let total = 0;
profile.samples.forEach((id, i) => {
  const dt = profile.timeDeltas[i] ?? 0;
  selfUs.set(id, (selfUs.get(id) ?? 0) + dt);
  total += dt;
});

const OWN = /\/(dist|src|bot)\//;
const where = (url) =>
  url.replace(/^.*node_modules\/((@[^/]+\/)?[^/]+)\/.*$/, 'npm:$1').replace(/^.*\/(dist|src|bot)\//, '$1/') ||
  '(native)';
const label = (cf) => `${cf.functionName || '(anonymous)'} ${where(cf.url)}:${cf.lineNumber + 1}`;

const byFunction = new Map();
const byFile = new Map();
const inclusive = new Map();
const add = (m, k, v) => m.set(k, (m.get(k) ?? 0) + v);
for (const [id, us] of selfUs) {
  const cf = nodes.get(id).callFrame;
  add(byFunction, label(cf), us);
  add(byFile, where(cf.url), us);
  const seen = new Set();
  for (let at = id; at !== undefined; at = parent.get(at)) {
    const f = nodes.get(at).callFrame;
    if (!OWN.test(f.url)) continue;
    const k = label(f);
    if (!seen.has(k)) add(inclusive, k, us);
    seen.add(k);
  }
}

const print = (title, m) => {
  console.log(`\n${title}`);
  for (const [k, us] of [...m].sort((a, b) => b[1] - a[1]).slice(0, rows)) {
    console.log(`${((100 * us) / total).toFixed(1).padStart(5)}%  ${k}`);
  }
};
console.log(`${file}: ${(total / 1e6).toFixed(2)} s sampled`);
print('self time by function', byFunction);
print('self time by file or package', byFile);
print("inclusive time of the project's functions", inclusive);

if (treeArg) {
  // Percentages of the busy time: idle, GC and V8's own bookkeeping are left out of the base.
  const minPercent = Number(treeArg.split('=')[1] ?? 0.7);
  const inclusiveUs = new Map();
  const sum = (id) => {
    const n = nodes.get(id);
    let us = selfUs.get(id) ?? 0;
    for (const c of n.children ?? []) us += sum(c);
    inclusiveUs.set(id, us);
    return us;
  };
  const root = profile.nodes[0];
  sum(root.id);
  let busy = 0;
  for (const c of root.children ?? []) {
    if (!/^\((idle|program|garbage collector)\)$/.test(nodes.get(c).callFrame.functionName)) busy += inclusiveUs.get(c);
  }
  const walk = (ids, depth) => {
    const merged = new Map();
    for (const id of ids) {
      const k = label(nodes.get(id).callFrame);
      const e = merged.get(k) ?? { us: 0, self: 0, children: [] };
      e.us += inclusiveUs.get(id);
      e.self += selfUs.get(id) ?? 0;
      e.children.push(...(nodes.get(id).children ?? []));
      merged.set(k, e);
    }
    for (const [k, e] of [...merged].sort((a, b) => b[1].us - a[1].us)) {
      const pct = (100 * e.us) / busy;
      if (pct < minPercent) continue;
      const selfPct = ((100 * e.self) / busy).toFixed(1);
      console.log(`${'  '.repeat(depth)}${pct.toFixed(1)}% (self ${selfPct}%) ${k}`);
      walk(e.children, depth + 1);
    }
  };
  console.log(`\ncall tree, % of busy time (${(busy / 1e6).toFixed(2)} s), branches under ${minPercent}% left out`);
  walk(root.children ?? [], 0);
}
