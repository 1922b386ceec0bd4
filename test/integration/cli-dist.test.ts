// bin/guildgate.mjs picks the compiled build when it is at least as new as the sources, else runs the
// sources through tsx. Checked on a scratch checkout whose entries only say where they were loaded from.
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';

const REPO = resolve(import.meta.dirname, '../..');
const OLD = new Date('2026-01-01T00:00:00Z');
const NEW = new Date('2026-01-02T00:00:00Z');
const NEWER = new Date('2026-01-03T00:00:00Z');

let root: string;

function write(path: string, text: string, mtime: Date): void {
  const full = join(root, path);
  mkdirSync(dirname(full), { recursive: true });
  writeFileSync(full, text);
  utimesSync(full, mtime, mtime);
}

const entry = (fn: string, where: string) =>
  `export async function ${fn}(argv) { console.log('${where} ' + argv.join(' ')); return 0; }\n`;

function run(...args: string[]): string {
  const out = spawnSync(process.execPath, [join(root, 'bin/guildgate.mjs'), ...args], { encoding: 'utf8' });
  expect(out.stderr).toBe('');
  expect(out.status).toBe(0);
  return out.stdout.trim();
}

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'gg-cli-dist-'));
  mkdirSync(join(root, 'bin'));
  copyFileSync(join(REPO, 'bin/guildgate.mjs'), join(root, 'bin/guildgate.mjs'));
  // tsx, for the runs from source, and ES modules as in the repository.
  symlinkSync(join(REPO, 'node_modules'), join(root, 'node_modules'));
  writeFileSync(join(root, 'package.json'), '{ "type": "module" }\n');
  write('src/cli/index.ts', entry('runCli', 'source'), OLD);
  write('src/domain/deep/module.ts', 'export const x: number = 1;\n', OLD);
  write('bot/cli.ts', entry('runCommandsCli', 'source'), OLD);
});
afterEach(() => {
  rmSync(root, { recursive: true, force: true });
});

it('runs the build when it is newer than every source, for the CLI and for `commands`', () => {
  write('dist/src/cli/index.js', entry('runCli', 'dist'), NEW);
  write('dist/bot/cli.js', entry('runCommandsCli', 'dist'), NEW);
  expect(run('config', 'check')).toBe('dist config check');
  expect(run('commands', 'register')).toBe('dist commands register');
});

it('runs the sources when any file under src/ or bot/ changed after the build', () => {
  write('dist/src/cli/index.js', entry('runCli', 'dist'), NEW);
  write('src/domain/deep/module.ts', 'export const x: number = 2;\n', NEWER);
  expect(run('usage', 'today')).toBe('source usage today');

  write('src/domain/deep/module.ts', 'export const x: number = 2;\n', OLD);
  write('bot/events/new.ts', 'export {};\n', NEWER);
  expect(run('usage', 'today')).toBe('source usage today');
});

it('runs the sources when there is no build', () => {
  expect(run('keys', 'list')).toBe('source keys list');
});

it('runs the build when only the build is shipped', () => {
  write('dist/src/cli/index.js', entry('runCli', 'dist'), OLD);
  rmSync(join(root, 'src'), { recursive: true });
  rmSync(join(root, 'bot'), { recursive: true });
  expect(run('doctor')).toBe('dist doctor');
});
