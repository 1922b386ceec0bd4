// The one stylesheet (served as /assets/style.css; CSP allows no inline styles). Light and dark
// themes follow the system setting; colours keep at least 4.5:1 contrast for text.
export const STYLE_CSS = `
:root {
  color-scheme: light dark;
  --bg: #ffffff; --fg: #1f2328; --muted: #57606a; --line: #d0d7de; --panel: #f6f8fa;
  --accent: #4752c4; --accent-fg: #ffffff; --danger: #b02a37; --danger-fg: #ffffff;
  --ok-bg: #dafbe1; --ok-fg: #1a4d2a; --warn-bg: #fff8c5; --warn-fg: #4d3800; --focus: #0969da;
  --s0: #3b5bdb; --s1: #2b8a3e; --s2: #c2255c; --s3: #b35c00; --s4: #862e9c; --s5: #0b7285; --s6: #5c940d; --s7: #6c757d;
}
@media (prefers-color-scheme: dark) {
  :root {
    --bg: #16171a; --fg: #e6e8eb; --muted: #a4abb3; --line: #3a3f45; --panel: #202327;
    --accent: #7984f5; --accent-fg: #0b0c10; --danger: #ff8589; --danger-fg: #16171a;
    --ok-bg: #12361f; --ok-fg: #b4f1c4; --warn-bg: #3b3112; --warn-fg: #f5e3a3; --focus: #79b8ff;
    --s0: #91a7ff; --s1: #69db7c; --s2: #f783ac; --s3: #ffa94d; --s4: #da77f2; --s5: #66d9e8; --s6: #a9e34b; --s7: #adb5bd;
  }
}
* { box-sizing: border-box; }
html { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; line-height: 1.5; }
body { margin: 0; background: var(--bg); color: var(--fg); }
a { color: var(--accent); }
a:focus-visible, button:focus-visible, input:focus-visible, summary:focus-visible, textarea:focus-visible {
  outline: 3px solid var(--focus); outline-offset: 2px;
}
.skip { position: absolute; left: -999px; }
.skip:focus { left: 1rem; top: 1rem; background: var(--bg); padding: .5rem; z-index: 1; }
.sr-only { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }
header.site, main, footer.site { max-width: 62rem; margin: 0 auto; padding: 1rem 1.25rem; }
header.site { display: flex; flex-wrap: wrap; gap: 1rem; align-items: center; justify-content: space-between; border-bottom: 1px solid var(--line); }
header.site .brand { font-weight: 700; font-size: 1.2rem; color: var(--fg); text-decoration: none; }
header.site nav ul { display: flex; flex-wrap: wrap; gap: 1rem; list-style: none; margin: 0; padding: 0; align-items: center; }
footer.site { border-top: 1px solid var(--line); color: var(--muted); font-size: .9rem; }
footer.site ul { display: flex; gap: 1rem; list-style: none; padding: 0; margin: 0; }
h1 { font-size: 1.8rem; margin: .5rem 0 1rem; }
h2 { font-size: 1.3rem; margin: 2rem 0 .75rem; }
section.panel { background: var(--panel); border: 1px solid var(--line); border-radius: 8px; padding: 1rem 1.25rem; margin: 1rem 0; }
.button, button { display: inline-block; font: inherit; font-weight: 600; padding: .55rem 1rem; border-radius: 6px;
  border: 1px solid var(--accent); background: var(--accent); color: var(--accent-fg); text-decoration: none; cursor: pointer; }
button.secondary { background: transparent; color: var(--accent); }
button.danger { background: var(--danger); border-color: var(--danger); color: var(--danger-fg); }
button.link { background: none; border: 0; padding: 0; color: var(--accent); font-weight: 400; text-decoration: underline; }
form.inline { display: inline; }
.actions { display: flex; flex-wrap: wrap; gap: .75rem; align-items: center; margin: .75rem 0; }
label { display: block; font-weight: 600; margin: .5rem 0 .25rem; }
input[type=text] { font: inherit; padding: .45rem .6rem; border: 1px solid var(--line); border-radius: 6px; background: var(--bg); color: var(--fg); width: min(100%, 32rem); }
input.key { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
.notice { background: var(--ok-bg); color: var(--ok-fg); border-radius: 6px; padding: .75rem 1rem; margin: 1rem 0; }
.warning { background: var(--warn-bg); color: var(--warn-fg); border-radius: 6px; padding: .75rem 1rem; margin: 1rem 0; }
.muted { color: var(--muted); }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .25rem 1rem; margin: 0; }
dl.facts dt { font-weight: 600; }
dl.facts dd { margin: 0; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .4rem .6rem; border-bottom: 1px solid var(--line); vertical-align: top; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
pre { background: var(--panel); border: 1px solid var(--line); border-radius: 6px; padding: .75rem 1rem; overflow-x: auto; }
code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: .9rem; }
meter { width: min(100%, 24rem); height: 1.1rem; }
.chart > svg { width: 100%; height: auto; max-width: 48rem; display: block; }
.chart .axis { stroke: var(--line); }
.chart text { fill: var(--muted); font-size: 11px; }
.legend { display: flex; flex-wrap: wrap; gap: .5rem 1.25rem; list-style: none; padding: 0; margin: .5rem 0; }
.legend svg { vertical-align: middle; margin-right: .35rem; }
.s0 { fill: var(--s0); } .s1 { fill: var(--s1); } .s2 { fill: var(--s2); } .s3 { fill: var(--s3); }
.s4 { fill: var(--s4); } .s5 { fill: var(--s5); } .s6 { fill: var(--s6); } .s7 { fill: var(--s7); }
details > summary { cursor: pointer; color: var(--accent); }
`;
