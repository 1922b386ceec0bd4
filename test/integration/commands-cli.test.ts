// `guildgate commands register` as an operator runs it: a separate process against the fake Discord.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { type FakeDiscord, startFakeDiscord } from '../fakes/discord.js';
import { runCli } from '../helpers/cli.js';

let fake: FakeDiscord;
let dir: string;

beforeAll(async () => {
  fake = await startFakeDiscord();
  dir = mkdtempSync(join(tmpdir(), 'gg-commands-'));
  const config = {
    dataDir: join(dir, 'data'),
    storage: { store: 'sqlite', limits: 'memory' },
    tiers: { free: { rpm: 10, tokensPerDay: 1000 }, plus: { rpm: 60, tokensPerDay: 100_000 } },
    discord: { applicationId: fake.applicationId, guildId: fake.guildId, apiBaseUrl: `${fake.url}/api` },
  };
  writeFileSync(join(dir, 'guildgate.json'), JSON.stringify(config));
});
afterAll(async () => {
  await fake?.close();
  rmSync(dir, { recursive: true, force: true });
});

async function guildgate(args: string[], token: string | undefined) {
  const run = await runCli(args, { GUILDGATE_CONFIG: join(dir, 'guildgate.json'), DISCORD_BOT_TOKEN: token });
  return { code: run.code, out: run.stdout + run.stderr };
}

it('registers the guild commands, and names what is missing when it cannot', async () => {
  const ok = await guildgate(['commands', 'register'], fake.token);
  expect(ok.code).toBe(0);
  expect(ok.out).toContain(`commands in server ${fake.guildId}`);
  expect(fake.commandPuts).toHaveLength(1);
  const names = fake.commands.guild.map((c) => c.name).sort();
  expect(names).toEqual(expect.arrayContaining(['key', 'mod', 'usage', 'models', 'privacy', 'Revoke key']));
  expect(ok.out).not.toContain(fake.token);

  const noToken = await guildgate(['commands', 'register'], undefined);
  expect(noToken.code).toBe(2);
  expect(noToken.out).toContain('DISCORD_BOT_TOKEN');

  const badToken = await guildgate(['commands', 'register'], 'not-the-token');
  expect(badToken.code).toBe(3);
  expect(badToken.out).not.toContain('not-the-token');
  expect(fake.commandPuts).toHaveLength(1);

  expect((await guildgate(['commands', 'list'], fake.token)).code).toBe(2);
});
