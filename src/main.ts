// Process entry of the relay alone (the container image, compose replicas). `npm start` runs
// bot/serve.ts instead, which adds the Discord bot when one is configured.
import { runProcess } from './run-process.js';

runProcess();
