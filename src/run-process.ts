// The process around the relay: loads and validates config, starts the relay and whatever runs
// beside it in the same process, and stops both gracefully on SIGTERM/SIGINT (the companion first,
// so nothing it does races the store closing).
import type { Logger } from 'pino';
import { ConfigError, configWarnings, loadConfig } from './config/load.js';
import type { Config } from './config/schema.js';
import { createLogger } from './logger.js';
import { type MetricsListener, startMetricsListener } from './observability/endpoint.js';
import { startRelay } from './server.js';
import type { Services } from './services.js';

/** Something that runs beside the relay on its services (the Discord bot). */
export interface Companion {
  stop(): Promise<void>;
}

export interface ProcessOptions {
  /** Started once the relay listens; null when the config asks for nothing. */
  companion?: (services: Services, log: Logger) => Promise<Companion | null>;
}

/** The validated config; a config error is printed and exits 2. */
export function loadConfigOrExit(): Config {
  try {
    return loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
}

async function start(opts: ProcessOptions): Promise<void> {
  const config = loadConfigOrExit();
  const log = createLogger(config.env.logLevel);
  for (const note of configWarnings(config)) log.warn(note);
  if (!opts.companion && config.discord && config.env.discordBotToken) {
    log.warn('This process runs the relay only: start the Discord bot with `npm start` or `npm run bot`.');
  }

  const relay = await startRelay(config, { log });
  // Before the relay announces itself: a metrics port that cannot be bound fails the start.
  let metrics: MetricsListener | null = null;
  if (config.metrics.enabled) {
    try {
      metrics = await startMetricsListener(relay.services.metrics, config.metrics.listen, config.env.metricsToken);
    } catch (err) {
      await relay.stop();
      throw err;
    }
    log.info({ url: `${metrics.url}/metrics` }, 'metrics listening');
  }
  log.info(
    { url: relay.url, publicBaseUrl: config.publicBaseUrl, backends: relay.services.backends, config: config.source },
    'guildgate relay listening',
  );
  let companion: Companion | null = null;
  try {
    companion = (await opts.companion?.(relay.services, log)) ?? null;
  } catch (err) {
    await relay.stop();
    await metrics?.close();
    throw err;
  }

  const shutdown = (signal: string) => {
    log.info({ signal }, 'shutting down');
    (async () => {
      // The message only: a companion's errors may carry request details (the bot's: interaction tokens).
      await companion
        ?.stop()
        .catch((err: Error) => log.error({ reason: err.message }, 'stopping the companion failed'));
      await relay.stop();
      // Last, so the drain can be watched until the end.
      await metrics?.close();
    })().then(
      () => process.exit(0),
      (err) => {
        log.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));
}

/** Runs the process; a failure to start is printed (message only) and exits 1. */
export function runProcess(opts: ProcessOptions = {}): void {
  start(opts).catch((err) => {
    process.stderr.write(`guildgate failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
