#!/usr/bin/env node
// Runs the CLI from the TypeScript sources in a checkout, or from the compiled build in an image
// that ships only dist/.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const source = fileURLToPath(new URL('../src/cli/index.ts', import.meta.url));
let cli;
if (existsSync(source)) {
  const { register } = await import('tsx/esm/api');
  register();
  cli = await import(source);
} else {
  cli = await import('../dist/src/cli/index.js');
}
process.exitCode = await cli.runCli(process.argv.slice(2));
