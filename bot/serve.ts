// Process entry of `npm start`: the relay, and the Discord bot in the same process on the same
// services when a discord section and DISCORD_BOT_TOKEN are set (one process, SQLite, no Redis).
import { runProcess } from '../src/run-process.js';
import { botConfigured, startBot } from './index.js';

runProcess({
  companion: (services, log) => (botConfigured(services.config) ? startBot(services, { log }) : Promise.resolve(null)),
});
