import type { Command } from 'commander';
import { configWarnings, loadConfig } from '../../config/load.js';
import { output } from '../context.js';

export function registerConfigCommands(program: Command): void {
  const config = program.command('config').description('inspect the configuration');
  config
    .command('check')
    .description('validate the config file and environment; exit 2 with every problem listed if invalid')
    .action((_opts, cmd: Command) => {
      const cfg = loadConfig();
      const notes = configWarnings(cfg);
      output(
        cmd,
        {
          ok: true,
          source: cfg.source,
          warnings: notes,
          tiers: Object.keys(cfg.tiers),
          models: Object.keys(cfg.models),
        },
        [
          `Config OK (${cfg.source ?? 'defaults, no file'}).`,
          `Tiers: ${Object.keys(cfg.tiers).join(', ')}; models: ${Object.keys(cfg.models).join(', ') || '(none)'}.`,
          ...notes.map((n) => `warning: ${n}`),
        ].join('\n'),
      );
    });
}
