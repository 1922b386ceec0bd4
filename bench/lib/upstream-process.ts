// Child process: the fake OpenAI-compatible upstream on loopback, in its own event loop so its work
// never competes with the relay or the load generator for one thread. Prints `{"url":...}` once ready.
import { startFakeUpstream } from '../../test/fakes/openai-upstream.js';

const upstream = await startFakeUpstream({ name: 'bench' });
// The fake records every request it receives; a bench sends tens of thousands, so forget them.
setInterval(() => upstream.reset(), 1_000);
process.stdout.write(`${JSON.stringify({ url: upstream.url })}\n`);

process.once('SIGTERM', () => {
  upstream.close().finally(() => process.exit(0));
});
