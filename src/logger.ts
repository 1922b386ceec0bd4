// JSON logs via pino. Redaction is a second line of defence: code never logs keys or headers, but
// if an error object carries one, these paths are blanked.
import pino, { type Logger } from 'pino';

export const REDACT_PATHS = [
  'authorization',
  '*.authorization',
  'headers.authorization',
  '*.headers.authorization',
  'apiKey',
  '*.apiKey',
  'key',
  'token',
  '*.token',
  'password',
  '*.password',
  // The web sign-in: session cookies, OAuth tokens and the application's secrets.
  'cookie',
  '*.cookie',
  'headers.cookie',
  '*.headers.cookie',
  'headers["set-cookie"]',
  '*.headers["set-cookie"]',
  'access_token',
  '*.access_token',
  'refresh_token',
  '*.refresh_token',
  'code_verifier',
  '*.code_verifier',
  'clientSecret',
  '*.clientSecret',
  'sessionSecret',
  '*.sessionSecret',
  'discordClientSecret',
  '*.discordClientSecret',
];

export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'guildgate' },
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination,
  );
}
