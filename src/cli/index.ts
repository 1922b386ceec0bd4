// `guildgate` operator CLI. Every command calls the same use cases as the bot and the web.
// Exit codes: 0 done, 1 refused (not found, wrong state, already exists), 2 bad usage or config,
// 3 a backing service failed.
import { Command, CommanderError } from 'commander';
import { ConfigError } from '../config/load.js';
import { registerConfigCommands } from './commands/config.js';
import { registerCostCommand } from './commands/cost.js';
import { registerDemoCommand } from './commands/demo.js';
import { registerDoctorCommand } from './commands/doctor.js';
import { registerKeyCommands } from './commands/keys.js';
import { registerUsageCommands } from './commands/usage.js';
import { registerUserCommands } from './commands/users.js';
import { ChecksFailed, EXIT, Refused, UsageError } from './context.js';

export function buildCli(): Command {
  const program = new Command('guildgate')
    .description('Operate a Guildgate relay: keys, users, usage, config.')
    .option('--json', 'print machine-readable JSON')
    .showHelpAfterError()
    .exitOverride();
  registerKeyCommands(program);
  registerUserCommands(program);
  registerUsageCommands(program);
  registerCostCommand(program);
  registerConfigCommands(program);
  registerDemoCommand(program);
  registerDoctorCommand(program);
  return program;
}

export async function runCli(argv: string[]): Promise<number> {
  try {
    await buildCli().parseAsync(argv, { from: 'user' });
    return EXIT.ok;
  } catch (err) {
    if (err instanceof CommanderError) {
      return err.exitCode === 0 ? EXIT.ok : EXIT.usage;
    }
    if (err instanceof UsageError) {
      process.stderr.write(`error: ${err.message}\n`);
      return EXIT.usage;
    }
    if (err instanceof Refused) {
      process.stderr.write(`error: ${err.message}\n`);
      return EXIT.refused;
    }
    if (err instanceof ChecksFailed) {
      process.stderr.write(`${err.message}\n`);
      return EXIT.service;
    }
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      return EXIT.usage;
    }
    process.stderr.write(`error: ${err instanceof Error ? err.message : String(err)}\n`);
    return EXIT.service;
  }
}
