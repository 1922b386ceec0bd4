import type { Command } from 'commander';
import { issueKey, restoreKey, revokeKey, rotateKey, setKeyTier, suspendKey } from '../../app/keys.js';
import { isSnowflake } from '../../domain/ids.js';
import type { KeyRecord } from '../../domain/types.js';
import { fail, output, parsePositiveInt, Refused, table, UsageError, withServices } from '../context.js';

const ACTOR = 'cli';

function summary(k: KeyRecord) {
  return {
    id: k.id,
    prefix: k.prefix,
    discordId: k.discordId,
    tier: k.tier,
    status: k.status,
    reason: k.statusReason,
    created: k.createdAt,
    expires: k.expiresAt,
  };
}

function describe(k: KeyRecord): string {
  return table([summary(k)]);
}

function checkDiscordId(id: string): string {
  if (!isSnowflake(id)) throw new UsageError(`--discord-id must be a Discord user id (17-20 digits), got "${id}"`);
  return id;
}

export function registerKeyCommands(program: Command): void {
  const keys = program.command('keys').description('issue and manage API keys');

  keys
    .command('issue')
    .description('issue a key for a Discord user and print it once')
    .requiredOption('--discord-id <id>', 'Discord user id of the owner')
    .option('--tier <tier>', 'tier name (default: the configured default tier)')
    .option('--expires-in-days <days>', 'key stops working after this many days')
    .action(async (opts, cmd: Command) => {
      const discordId = checkDiscordId(opts.discordId);
      const days = opts.expiresInDays ? parsePositiveInt(opts.expiresInDays, '--expires-in-days') : null;
      await withServices(async (s) => {
        const expiresAt = days ? new Date(s.now().getTime() + days * 86_400_000) : null;
        const r = await issueKey(s.keys, { discordId, tier: opts.tier, expiresAt, actor: ACTOR });
        if (!r.ok) fail(r);
        output(
          cmd,
          { key: r.key, ...summary(r.record) },
          `${r.key}\n\nThis key is shown once. Store it now.\n${describe(r.record)}`,
        );
      });
    });

  keys
    .command('list')
    .description('list keys, newest first')
    .option('--discord-id <id>', 'only this user')
    .option('--status <status>', 'active | suspended | revoked')
    .option('--limit <n>', 'at most this many', '100')
    .action(async (opts, cmd: Command) => {
      const limit = parsePositiveInt(opts.limit, '--limit');
      if (opts.status && !['active', 'suspended', 'revoked'].includes(opts.status)) {
        throw new UsageError(`--status must be active, suspended or revoked, got "${opts.status}"`);
      }
      await withServices(async (s) => {
        const list = await s.store.listKeys({ discordId: opts.discordId, status: opts.status, limit });
        output(cmd, list.map(summary), table(list.map(summary)));
      });
    });

  keys
    .command('show <keyId>')
    .description('show one key and its audit trail')
    .action(async (keyId: string, _opts, cmd: Command) => {
      await withServices(async (s) => {
        const k = await s.store.getKeyById(keyId);
        if (!k) throw new Refused(`No key with id ${keyId}.`);
        const audit = await s.store.listAudit({ target: keyId, limit: 50 });
        output(cmd, { ...summary(k), audit }, `${describe(k)}\n\n${table(audit.map(({ meta: _m, ...a }) => a))}`);
      });
    });

  keys
    .command('rotate <keyId>')
    .description('replace a key with a new one (the old one stops at once); prints the new key once')
    .action(async (keyId: string, _opts, cmd: Command) => {
      await withServices(async (s) => {
        const r = await rotateKey(s.keys, { keyId, actor: ACTOR });
        if (!r.ok) fail(r);
        output(cmd, { key: r.key, ...summary(r.record) }, `${r.key}\n\nThis key is shown once.\n${describe(r.record)}`);
      });
    });

  keys
    .command('revoke <keyId>')
    .description('revoke a key for good')
    .option('--reason <text>', 'why (kept in the audit log)')
    .action(async (keyId: string, opts, cmd: Command) => {
      await withServices(async (s) => {
        const r = await revokeKey(s.keys, { keyId, actor: ACTOR, reason: opts.reason ?? null });
        if (!r.ok) fail(r);
        output(cmd, summary(r.record), `Revoked ${keyId}.`);
      });
    });

  keys
    .command('suspend <keyId>')
    .description('suspend a key until it is restored')
    .requiredOption('--reason <text>', 'why (kept in the audit log)')
    .action(async (keyId: string, opts, cmd: Command) => {
      await withServices(async (s) => {
        const r = await suspendKey(s.keys, { keyId, actor: ACTOR, reason: opts.reason });
        if (!r.ok) fail(r);
        output(cmd, summary(r.record), `Suspended ${keyId}.`);
      });
    });

  keys
    .command('restore <keyId>')
    .description('restore a suspended key')
    .option('--reason <text>', 'why (kept in the audit log)')
    .action(async (keyId: string, opts, cmd: Command) => {
      await withServices(async (s) => {
        const r = await restoreKey(s.keys, { keyId, actor: ACTOR, reason: opts.reason ?? null });
        if (!r.ok) fail(r);
        output(cmd, summary(r.record), `Restored ${keyId}.`);
      });
    });

  keys
    .command('tier <keyId> <tier>')
    .description("change a key's tier")
    .option('--reason <text>', 'why (kept in the audit log)')
    .action(async (keyId: string, tier: string, opts, cmd: Command) => {
      await withServices(async (s) => {
        const r = await setKeyTier(s.keys, { keyId, tier, actor: ACTOR, reason: opts.reason ?? null });
        if (!r.ok) fail(r);
        output(cmd, summary(r.record), `Key ${keyId} is now on tier ${tier}.`);
      });
    });
}
