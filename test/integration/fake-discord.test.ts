// Proves the fake Discord (test/fakes/discord.ts) against an unmodified discord.js Client: login,
// interactions and their rules (3 s, single acknowledgement, ephemeral fixed by the first response),
// member/ban events, REST errors with Discord's codes, resume, DMs, rate limits and intents.
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { createInflate, constants as zlibConstants } from 'node:zlib';
import {
  ActionRowBuilder,
  ApplicationCommandOptionType,
  ApplicationCommandType,
  ButtonBuilder,
  ButtonStyle,
  Client,
  type ClientOptions,
  DiscordAPIError,
  DiscordjsError,
  Events,
  GatewayIntentBits,
  type GuildBan,
  type GuildMember,
  type Interaction,
  MessageFlags,
  type PartialGuildMember,
  Partials,
  Routes,
  type TextChannel,
} from 'discord.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { type FakeDiscord, startFakeDiscord } from '../fakes/discord.js';

const INTENTS = [GatewayIntentBits.Guilds, GatewayIntentBits.GuildMembers, GatewayIntentBits.GuildModeration];

type Handler = (interaction: Interaction) => Promise<void>;

const clients: Client[] = [];

async function connect(fake: FakeDiscord, options: Partial<ClientOptions> = {}): Promise<Client> {
  const client = new Client({ intents: INTENTS, rest: { api: `${fake.url}/api` }, ...options });
  clients.push(client);
  const ready = once(client, Events.ClientReady);
  await client.login(fake.token);
  await ready;
  return client;
}

/** Rejects with what `promise` rejected with, or fails when it resolves. */
async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  throw new Error('expected a rejection');
}

describe('fake Discord with a real discord.js Client', () => {
  let fake: FakeDiscord;
  let client: Client;
  const handlers = new Map<string, Handler>();
  const handlerErrors: unknown[] = [];
  // Members that exist before the client logs in, so discord.js has not cached them.
  let bob: string;
  let carol: string;
  let dave: string;
  let erin: string;
  let frank: string;
  let alice: string;

  beforeAll(async () => {
    fake = await startFakeDiscord();
    alice = fake.addMember({ user: { username: 'alice' }, roles: [fake.roleIds.member] }).user.id;
    bob = fake.addMember({ user: { username: 'bob' } }).user.id;
    carol = fake.addMember({ user: { username: 'carol' } }).user.id;
    dave = fake.addMember({ user: { username: 'dave' }, pending: true }).user.id;
    erin = fake.addMember({ user: { username: 'erin' } }).user.id;
    frank = fake.addMember({ user: { username: 'frank' }, pending: true }).user.id;
    // Partials.GuildMember: GUILD_MEMBER_REMOVE/UPDATE for members discord.js has not cached.
    client = await connect(fake, { partials: [Partials.GuildMember] });
    client.on(Events.InteractionCreate, (interaction) => {
      const key = interaction.isCommand()
        ? interaction.commandName
        : interaction.isMessageComponent()
          ? interaction.customId
          : '';
      handlers
        .get(key)?.(interaction)
        .catch((err: unknown) => handlerErrors.push(err));
    });
  });

  afterAll(async () => {
    await Promise.all(clients.map((c) => c.destroy()));
    await fake?.close();
  });

  it('logs in (GET /gateway/bot, IDENTIFY, READY, GUILD_CREATE) and caches the guild', async () => {
    expect(client.isReady()).toBe(true);
    expect(client.user?.id).toBe(fake.botUserId);
    expect(client.application?.id).toBe(fake.applicationId);
    const guild = client.guilds.cache.get(fake.guildId);
    expect(guild?.available).toBe(true);
    expect(guild?.ownerId).toBe(fake.ownerId);
    expect(guild?.members.me?.id).toBe(fake.botUserId);
    expect(guild?.memberCount).toBe(fake.members.size);
    expect(guild?.channels.cache.get(fake.modLogChannelId)?.name).toBe('mod-log');
    expect(guild?.roles.cache.get(fake.roleIds.moderator)?.name).toBe('Moderator');
    // Only the bot's own member arrives with GUILD_CREATE.
    expect(guild?.members.cache.has(bob)).toBe(false);

    expect(fake.calls[0]).toMatchObject({ method: 'GET', path: '/gateway/bot', status: 200, authorized: true });
    expect(fake.identifyCount).toBe(1);
    expect(fake.identifies[0]).toMatchObject({ token: fake.token, intents: 7, compress: false, shard: [0, 1] });
    expect(fake.gatewayConnections[0]?.url).toBe('/?v=10&encoding=json');
    expect(fake.gatewayConnections[0]?.compress).toBeNull();
  });

  it('registers guild commands with one PUT', async () => {
    const guild = client.guilds.cache.get(fake.guildId)!;
    const registered = await guild.commands.set([
      { name: 'ping', description: 'Ping' },
      { name: 'late', description: 'Answers too late' },
      { name: 'twice', description: 'Answers twice' },
      {
        name: 'key',
        description: 'Keys',
        defaultMemberPermissions: '32',
        options: [
          {
            type: ApplicationCommandOptionType.Subcommand,
            name: 'show',
            description: 'Show a key',
            options: [{ type: ApplicationCommandOptionType.User, name: 'user', description: 'Whose', required: true }],
          },
        ],
      },
      { name: 'confirm', description: 'Asks for confirmation' },
      { type: ApplicationCommandType.User, name: 'Key status' },
    ]);
    expect(registered.size).toBe(6);
    expect(fake.commandPuts).toHaveLength(1);
    expect(fake.commands.guild.map((c) => c.name)).toContain('ping');
    expect(fake.commands.guild.find((c) => c.name === 'key')?.default_member_permissions).toBe('32');
  });

  it('/ping: an ephemeral deferral then editReply is recorded as such', async () => {
    handlers.set('ping', async (i) => {
      if (!i.isChatInputCommand()) return;
      expect(i.inCachedGuild()).toBe(true);
      expect(i.memberPermissions?.has('ViewChannel')).toBe(true);
      await i.deferReply({ flags: MessageFlags.Ephemeral });
      await i.editReply('pong');
    });
    const h = fake.interact({ type: 'chat-input', name: 'ping', userId: alice });
    expect(h.record.deliveredTo).toBe(1);
    const first = await h.response();
    expect(first).toMatchObject({ type: 5, flags: MessageFlags.Ephemeral, ephemeral: true });
    const edits = await h.edits(1);
    expect(edits).toHaveLength(1);
    expect(edits[0]).toMatchObject({ target: '@original', content: 'pong' });
    expect(h.record.ephemeral).toBe(true);
    expect(h.record.original?.content).toBe('pong');
  });

  it('refuses a first response later than 3 s with 10062', async () => {
    let settle!: (err: unknown) => void;
    const outcome = new Promise<unknown>((resolve) => {
      settle = resolve;
    });
    handlers.set('late', async (i) => {
      if (!i.isChatInputCommand()) return;
      await sleep(3200);
      settle(await rejection(i.reply({ content: 'too late', flags: MessageFlags.Ephemeral })));
    });
    const h = fake.interact({ type: 'chat-input', name: 'late', userId: alice });
    const err = await outcome;
    expect(err).toBeInstanceOf(DiscordAPIError);
    expect((err as DiscordAPIError).code).toBe(10062);
    expect((err as DiscordAPIError).status).toBe(404);
    expect(h.record.response).toBeNull();
    expect(h.record.refused).toMatchObject([{ route: 'callback', code: 10062 }]);
  });

  it('refuses a second first response with 40060', async () => {
    let settle!: (errs: unknown[]) => void;
    const outcome = new Promise<unknown[]>((resolve) => {
      settle = resolve;
    });
    handlers.set('twice', async (i) => {
      if (!i.isChatInputCommand()) return;
      await i.reply({ content: 'one', flags: MessageFlags.Ephemeral });
      // discord.js guards locally; Discord refuses a second callback on the same interaction.
      const local = await rejection(i.reply('two'));
      const remote = await rejection(
        client.rest.post(Routes.interactionCallback(i.id, i.token), {
          body: { type: 4, data: { content: 'two' } },
          auth: false,
        }),
      );
      settle([local, remote]);
    });
    const h = fake.interact({ type: 'chat-input', name: 'twice', userId: alice });
    const [local, remote] = await outcome;
    expect(local).toBeInstanceOf(DiscordjsError);
    expect(remote).toBeInstanceOf(DiscordAPIError);
    expect((remote as DiscordAPIError).code).toBe(40060);
    expect(h.record.response).toMatchObject({ type: 4, content: 'one', ephemeral: true });
  });

  it('delivers subcommands with resolved users, attachments as multipart, components and user commands', async () => {
    handlers.set('key', async (i) => {
      if (!i.isChatInputCommand()) return;
      const target = i.options.getUser('user', true);
      const member = i.options.getMember('user') as GuildMember | null;
      await i.reply({
        content: `${i.options.getSubcommand()} ${target.username} pending=${String(member?.pending)}`,
        files: [{ attachment: Buffer.from('sk-secret'), name: 'key.txt' }],
        flags: MessageFlags.Ephemeral,
      });
    });
    fake.updateMember(alice, { roles: [fake.roleIds.member, fake.roleIds.moderator] });
    const key = fake.interact({
      type: 'chat-input',
      name: 'key',
      subcommand: 'show',
      options: { user: dave },
      userId: alice,
    });
    const reply = await key.response();
    expect(reply.content).toBe('show dave pending=true');
    expect(reply.files).toMatchObject([{ name: 'key.txt', text: 'sk-secret' }]);
    expect(key.record.original?.attachments[0]?.filename).toBe('key.txt');
    // Without Manage Server, Discord would not offer /key (an admin override is simulated explicitly).
    expect(() =>
      fake.interact({ type: 'chat-input', name: 'key', subcommand: 'show', options: { user: dave }, userId: bob }),
    ).toThrow(/needs permissions 32/);

    handlers.set('confirm', async (i) => {
      if (!i.isChatInputCommand()) return;
      const row = new ActionRowBuilder<ButtonBuilder>().addComponents(
        new ButtonBuilder().setCustomId('confirm:yes').setLabel('Yes').setStyle(ButtonStyle.Danger),
      );
      await i.reply({ content: 'Sure?', components: [row], flags: MessageFlags.Ephemeral });
    });
    handlers.set('confirm:yes', async (i) => {
      if (!i.isButton()) return;
      await i.update({ content: 'Done.', components: [] });
    });
    await fake.interact({ type: 'chat-input', name: 'confirm', userId: alice }).response();
    const press = fake.interact({ type: 'button', customId: 'confirm:yes', userId: alice });
    expect(await press.response()).toMatchObject({ type: 7, ephemeral: true, content: 'Done.' });

    handlers.set('Key status', async (i) => {
      if (!i.isUserContextMenuCommand()) return;
      await i.reply({ content: `target ${i.targetUser.username}`, flags: MessageFlags.Ephemeral });
    });
    const ctx = fake.interact({ type: 'user-command', name: 'Key status', targetId: erin, userId: alice });
    expect((await ctx.response()).content).toBe('target erin');
    expect(handlerErrors).toEqual([]);
  });

  it('turns member remove, ban and member update into discord.js events (Partials.GuildMember)', async () => {
    const removed = once(client, Events.GuildMemberRemove) as Promise<[GuildMember | PartialGuildMember]>;
    fake.removeMember(bob);
    const [gone] = await removed;
    expect(gone.id).toBe(bob);
    expect(gone.partial).toBe(true);

    const banned = once(client, Events.GuildBanAdd) as Promise<[GuildBan]>;
    const removedByBan = once(client, Events.GuildMemberRemove) as Promise<[GuildMember | PartialGuildMember]>;
    fake.banUser(carol, { reason: 'spam', order: 'remove-first' });
    const [[ban], [left]] = await Promise.all([banned, removedByBan]);
    expect(ban.user.id).toBe(carol);
    expect(left.id).toBe(carol);

    const updated = once(client, Events.GuildMemberUpdate) as Promise<[GuildMember | PartialGuildMember, GuildMember]>;
    fake.updateMember(frank, { roles: [fake.roleIds.member], pending: false });
    const [before, after] = await updated;
    expect(before.partial).toBe(true);
    expect(after.id).toBe(frank);
    expect(after.roles.cache.has(fake.roleIds.member)).toBe(true);
    expect(after.pending).toBe(false);
  });

  it('answers member and ban look-ups over REST with Discord codes', async () => {
    const guild = client.guilds.cache.get(fake.guildId)!;
    const member = await guild.members.fetch({ user: dave, force: true });
    expect(member.pending).toBe(true);
    expect(fake.calls.at(-1)).toMatchObject({
      method: 'GET',
      path: `/guilds/${fake.guildId}/members/${dave}`,
      status: 200,
    });

    const stranger = fake.createUser({ username: 'stranger' });
    const err = await rejection(guild.members.fetch(stranger.id));
    expect(err).toBeInstanceOf(DiscordAPIError);
    expect((err as DiscordAPIError).code).toBe(10007);
    expect(fake.calls.at(-1)).toMatchObject({ path: `/guilds/${fake.guildId}/members/${stranger.id}`, status: 404 });

    const elsewhere = '123456789012345678';
    expect(((await rejection(client.rest.get(Routes.guildMember(elsewhere, dave)))) as DiscordAPIError).code).toBe(
      10004,
    );
    const unknownChannel = client.rest.post(Routes.channelMessages(elsewhere), { body: { content: 'x' } });
    expect(((await rejection(unknownChannel)) as DiscordAPIError).code).toBe(10003);

    expect((await guild.bans.fetch({ user: carol, force: true })).reason).toBe('spam');
    expect(((await rejection(guild.bans.fetch({ user: dave, force: true }))) as DiscordAPIError).code).toBe(10026);
  });

  it('sends DMs, refuses them with 50007 when closed or without a shared server, and posts to #mod-log', async () => {
    await (await client.users.fetch(dave)).send('your key is ready');
    expect(fake.dms.get(dave)?.map((m) => m.content)).toEqual(['your key is ready']);

    fake.setDmsClosed(erin);
    const closed = await rejection((await client.users.fetch(erin)).send('hello'));
    expect(closed).toBeInstanceOf(DiscordAPIError);
    expect((closed as DiscordAPIError).code).toBe(50007);
    const noMutual = await rejection((await client.users.fetch(carol)).send('you were banned'));
    expect((noMutual as DiscordAPIError).code).toBe(50007);

    const modLog = client.channels.cache.get(fake.modLogChannelId) as TextChannel;
    await modLog.send('key issued to dave');
    expect(fake.messages.get(fake.modLogChannelId)?.map((m) => m.content)).toEqual(['key issued to dave']);
  });

  it('resumes after closeGateway(4000), replaying what was dispatched meanwhile', async () => {
    handlers.set('ping', async (i) => {
      if (!i.isChatInputCommand()) return;
      await i.reply({ content: 'pong', flags: MessageFlags.Ephemeral });
    });
    const resumed = once(client, Events.ShardResume);
    fake.closeGateway(4000);
    // Dispatched while the bot is disconnected: replayed on RESUME, within the 3 s window.
    const during = fake.interact({ type: 'chat-input', name: 'ping', userId: alice });
    await resumed;
    expect(fake.resumeCount).toBe(1);
    expect(fake.identifyCount).toBe(1);
    expect((await during.response()).content).toBe('pong');
    expect(fake.gatewayConnections.at(-1)?.url).toBe('/resume?v=10&encoding=json');

    const after = fake.interact({ type: 'chat-input', name: 'ping', userId: alice });
    expect((await after.response()).content).toBe('pong');
  });

  it('returns rate-limit headers, 401 without the bot token, and retries an injected 429', async () => {
    const ok = await fetch(`${fake.url}/api/v10/users/@me`, { headers: { authorization: `Bot ${fake.token}` } });
    expect(ok.status).toBe(200);
    for (const h of [
      'x-ratelimit-limit',
      'x-ratelimit-remaining',
      'x-ratelimit-reset',
      'x-ratelimit-reset-after',
      'x-ratelimit-bucket',
    ])
      expect(ok.headers.get(h)).not.toBeNull();
    const denied = await fetch(`${fake.url}/api/v10/users/@me`, { headers: { authorization: 'Bot nope' } });
    expect(denied.status).toBe(401);
    expect(await denied.json()).toEqual({ message: '401: Unauthorized', code: 0 });

    fake.injectRateLimit({ method: 'POST', path: '/channels/:channel/messages', retryAfter: 0.2 });
    const general = client.channels.cache.get(fake.generalChannelId) as TextChannel;
    await general.send('after a 429');
    const posts = fake.calls.filter(
      (c) => c.method === 'POST' && c.path === `/channels/${fake.generalChannelId}/messages`,
    );
    expect(posts.map((c) => c.status)).toEqual([429, 200]);
    expect(fake.messages.get(fake.generalChannelId)?.map((m) => m.content)).toEqual(['after a 429']);
  });

  it('fails login with a wrong token', async () => {
    const bad = new Client({ intents: INTENTS, rest: { api: `${fake.url}/api` } });
    clients.push(bad);
    const err = await rejection(bad.login('not-the-token'));
    expect(err).toBeInstanceOf(DiscordjsError);
    expect((err as DiscordjsError).code).toBe('TokenInvalid');
    expect(fake.calls.at(-1)).toMatchObject({ path: '/gateway/bot', status: 401, authorized: false });
  });
});

describe('fake Discord gateway edge cases', () => {
  it('closes with 4014 when the Server Members intent is not enabled, failing login', async () => {
    const fake = await startFakeDiscord({ membersIntentAllowed: false });
    try {
      const client = new Client({ intents: INTENTS, rest: { api: `${fake.url}/api` } });
      clients.push(client);
      const err = await rejection(client.login(fake.token));
      expect((err as Error).message).toBe('Used disallowed intents');
      expect(fake.gatewayConnections[0]?.close).toMatchObject({ code: 4014, by: 'server' });
      expect(fake.identifyCount).toBe(1);
    } finally {
      await fake.close();
    }
  });

  it('without Partials.GuildMember, events about uncached members are dropped or renamed', async () => {
    const fake = await startFakeDiscord();
    try {
      const zed = fake.addMember({ user: { username: 'zed' } }).user.id;
      const yan = fake.addMember({ user: { username: 'yan' } }).user.id;
      const client = await connect(fake);
      const seen: string[] = [];
      client.on(Events.GuildMemberRemove, () => seen.push('remove'));
      client.on(Events.GuildMemberUpdate, () => seen.push('update'));
      client.on(Events.GuildMemberAvailable, () => seen.push('available'));
      const banned = once(client, Events.GuildBanAdd);
      fake.removeMember(zed);
      fake.updateMember(yan, { roles: [fake.roleIds.member] });
      fake.banUser(yan);
      await banned;
      await sleep(50);
      // GUILD_MEMBER_REMOVE for an uncached member emits nothing; GUILD_MEMBER_UPDATE emits
      // guildMemberAvailable (and caches the member, so the ban's removal is seen).
      expect(seen).toEqual(['available', 'remove']);
      await client.destroy();
    } finally {
      await fake.close();
    }
  });

  it('speaks zlib-stream when asked and closes 4004 on a bad IDENTIFY token', async () => {
    const fake = await startFakeDiscord();
    try {
      const ws = new WebSocket(`${fake.gatewayUrl}/?v=10&encoding=json&compress=zlib-stream`);
      const inflate = createInflate({ finishFlush: zlibConstants.Z_SYNC_FLUSH });
      const hello = new Promise<{ op: number; d: { heartbeat_interval: number } }>((resolve) =>
        inflate.once('data', (chunk: Buffer) => resolve(JSON.parse(chunk.toString('utf8')))),
      );
      ws.on('message', (data: Buffer) => inflate.write(data));
      expect(await hello).toMatchObject({ op: 10, d: { heartbeat_interval: 41250 } });
      const closed = once(ws, 'close') as Promise<[number, Buffer]>;
      ws.send(JSON.stringify({ op: 2, d: { token: 'wrong', intents: 1, properties: {} } }));
      const [code] = await closed;
      expect(code).toBe(4004);
      inflate.close();
    } finally {
      await fake.close();
    }
  });
});
