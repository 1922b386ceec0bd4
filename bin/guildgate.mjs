#!/usr/bin/env node
// Runs the CLI from the compiled build (dist/, `npm run build`) when there is one at least as new as
// the sources, else from the TypeScript sources through tsx (about 2 s more per call). An image that
// ships only dist/ has no sources to compare with and always runs the build.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

/** Newest modification time of any file under `dir` (0 when it does not exist). */
function newestUnder(dir) {
  let newest = 0;
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return 0;
  }
  for (const e of entries) {
    const path = join(dir, e.name);
    newest = Math.max(newest, e.isDirectory() ? newestUnder(path) : statSync(path).mtimeMs);
  }
  return newest;
}

/** The build is used unless a source under src/ or bot/ changed after it was written. */
function buildIsCurrent(built) {
  if (!existsSync(built)) return false;
  return statSync(built).mtimeMs >= Math.max(newestUnder(join(root, 'src')), newestUnder(join(root, 'bot')));
}

// `commands ...` (slash command registration) belongs to the bot in bot/; the rest is src/cli.
const argv = process.argv.slice(2);
const [entry, run] = argv[0] === 'commands' ? ['bot/cli', 'runCommandsCli'] : ['src/cli/index', 'runCli'];
const built = join(root, 'dist', `${entry}.js`);
const source = join(root, `${entry}.ts`);
let cli;
if (!existsSync(source) || buildIsCurrent(built)) {
  cli = await import(new URL(`../dist/${entry}.js`, import.meta.url).href);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  cli = await import(source);
}
process.exitCode = await cli[run](argv);
