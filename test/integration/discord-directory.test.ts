// ClientDirectory (bot/discord-directory.ts) with an unmodified discord.js Client against the fake
// Discord: what each Discord answer means for membership, bans, DMs and the mod log.
import { once } from 'node:events';
import { Writable } from 'node:stream';
import { Client, Events, GatewayIntentBits, PermissionFlagsBits } from 'discord.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClientDirectory } from '../../bot/discord-directory.js';
import { discordSchema } from '../../src/config/schema.js';
import { createLogger } from '../../src/logger.js';
import { type FakeDiscord, startFakeDiscord } from '../fakes/discord.js';

const logs: string[] = [];
const log = createLogger(
  'info',
  new Writable({
    write(chunk, _enc, cb) {
      logs.push(String(chunk));
      cb();
    },
  }),
);
const clients: Client[] = [];
const fakes: FakeDiscord[] = [];

async function connect(options: Parameters<typeof startFakeDiscord>[0] = {}, modLogChannelId?: string) {
  const fake = await startFakeDiscord(options);
  fakes.push(fake);
  const client = new Client({ intents: [GatewayIntentBits.Guilds], rest: { api: `${fake.url}/api` } });
  clients.push(client);
  const ready = once(client, Events.ClientReady);
  await client.login(fake.token);
  await ready;
  const config = discordSchema.parse({
    applicationId: fake.applicationId,
    guildId: fake.guildId,
    modLogChannelId: modLogChannelId === undefined ? fake.modLogChannelId : modLogChannelId || undefined,
    apiBaseUrl: `${fake.url}/api`,
  });
  return { fake, directory: new ClientDirectory(client, config, log) };
}

let fake: FakeDiscord;
let directory: ClientDirectory;

beforeAll(async () => {
  ({ fake, directory } = await connect());
});

afterAll(async () => {
  for (const c of clients) await c.destroy();
  for (const f of fakes) await f.close();
});

describe('ClientDirectory', () => {
  it('reads a member as Discord has them now, and null for non-members and unknown users', async () => {
    const m = fake.addMember({ roles: [fake.roleIds.member], pending: true });
    expect(await directory.member(m.user.id)).toEqual({
      userId: m.user.id,
      roleIds: [fake.roleIds.member],
      pending: true,
      joinedAt: new Date(m.joined_at),
    });
    fake.updateMember(m.user.id, { roles: [], pending: false });
    expect(await directory.member(m.user.id)).toMatchObject({ roleIds: [], pending: false });
    fake.removeMember(m.user.id);
    expect(await directory.member(m.user.id)).toBeNull();
    expect(await directory.member('123456789012345678')).toBeNull();
  });

  it('tells banned users from others', async () => {
    const user = fake.createUser();
    expect(await directory.isBanned(user.id)).toBe(false);
    fake.banUser(user.id);
    expect(await directory.isBanned(user.id)).toBe(true);
  });

  it('without Ban Members, counts a ban as no ban (the leave policy applies) and warns once', async () => {
    const weak = await connect({ botPermissions: PermissionFlagsBits.ViewChannel | PermissionFlagsBits.SendMessages });
    const user = weak.fake.createUser();
    weak.fake.banUser(user.id);
    expect(await weak.directory.isBanned(user.id)).toBe(false);
    expect(await weak.directory.isBanned(user.id)).toBe(false);
    expect(logs.filter((l) => l.includes('lacks Ban Members'))).toHaveLength(1);
  });

  it('sends DMs, and answers false when the user cannot be messaged', async () => {
    const open = fake.addMember();
    const closed = fake.addMember();
    fake.setDmsClosed(closed.user.id);
    expect(await directory.dm(open.user.id, 'Your key was revoked.')).toBe(true);
    expect(fake.dms.get(open.user.id)?.map((m) => m.content)).toEqual(['Your key was revoked.']);
    expect(await directory.dm(closed.user.id, 'Your key was revoked.')).toBe(false);
  });

  it('posts to the mod-log channel without pinging, and never throws', async () => {
    const member = fake.addMember();
    await directory.modLog(`Suspended the key of <@${member.user.id}>: left the server.`);
    const [post] = fake.messages.get(fake.modLogChannelId) ?? [];
    expect(post?.content).toBe(`Suspended the key of <@${member.user.id}>: left the server.`);
    const call = fake.calls.find((c) => c.method === 'POST' && c.path === `/channels/${fake.modLogChannelId}/messages`);
    expect(call?.body).toMatchObject({ allowed_mentions: { parse: [] } });

    const missing = await connect({}, '123456789012345678');
    await expect(missing.directory.modLog('hello')).resolves.toBeUndefined();
    expect(logs.some((l) => l.includes('mod log post failed'))).toBe(true);
    const none = await connect({}, '');
    await expect(none.directory.modLog('hello')).resolves.toBeUndefined();
    expect(none.fake.calls.filter((c) => c.path.includes('/messages'))).toEqual([]);
  });
});
