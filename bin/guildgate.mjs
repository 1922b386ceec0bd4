#!/usr/bin/env node
// Runs the CLI from the TypeScript sources in a checkout, or from the compiled build in an image
// that ships only dist/.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

// `commands ...` (slash command registration) belongs to the bot in bot/; the rest is src/cli.
const argv = process.argv.slice(2);
const [entry, run] = argv[0] === 'commands' ? ['bot/cli', 'runCommandsCli'] : ['src/cli/index', 'runCli'];
const source = fileURLToPath(new URL(`../${entry}.ts`, import.meta.url));
let cli;
if (existsSync(source)) {
  const { register } = await import('tsx/esm/api');
  register();
  cli = await import(source);
} else {
  cli = await import(`../dist/${entry}.js`);
}
process.exitCode = await cli[run](argv);
