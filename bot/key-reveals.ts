// A new key stays in its reply for `keyRevealMs`, then the reply is edited to the redacted text. The
// interaction token that allows the edit lives 15 minutes; config caps keyRevealMs at 14.
import type { RepliableInteraction } from 'discord.js';
import type { Logger } from 'pino';
import { describeError } from './errors.js';

/** How long shutdown waits for the early redactions. */
const FLUSH_TIMEOUT_MS = 3_000;

export class KeyReveals {
  readonly #pending = new Map<NodeJS.Timeout, () => Promise<void>>();

  constructor(
    private readonly revealMs: number,
    private readonly log: Logger,
  ) {}

  schedule(interaction: RepliableInteraction, redacted: string): void {
    const redact = () =>
      interaction.editReply({ content: redacted }).then(
        () => {},
        (err) => this.log.warn({ err: describeError(err) }, 'could not remove a shown key from its reply'),
      );
    const timer = setTimeout(() => {
      this.#pending.delete(timer);
      void redact();
    }, this.revealMs).unref();
    this.#pending.set(timer, redact);
  }

  /** Redacts every key still on show now, so none outlives the process that showed it. */
  async flush(): Promise<void> {
    const redactions = [...this.#pending].map(([timer, redact]) => {
      clearTimeout(timer);
      return redact();
    });
    this.#pending.clear();
    await Promise.race([Promise.all(redactions), new Promise((done) => setTimeout(done, FLUSH_TIMEOUT_MS).unref())]);
  }
}
