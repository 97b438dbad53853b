import { pino, type Logger } from 'pino';
import pretty from 'pino-pretty';
import type { Config } from '../config/config.ts';

export type { Logger };

/**
 * The one logger. Pretty lines are written synchronously from this thread (no transport
 * worker) so that a crash never swallows the last lines an operator needs.
 */
export function createLogger(config: Pick<Config, 'logFormat' | 'logLevel'>, destination?: NodeJS.WritableStream): Logger {
  const options = {
    level: config.logLevel,
    base: undefined,
    // Webhook URLs carry the token in the query string (the WaVoIP panel has no header field).
    redact: { paths: ['req.headers.authorization', 'req.headers["x-webhook-token"]'], censor: '[redacted]' },
  };
  if (config.logFormat === 'json') {
    return pino(options, destination ?? pino.destination({ sync: true }));
  }
  return pino(
    options,
    pretty({ destination: destination ?? 1, sync: true, colorize: false, singleLine: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' }),
  );
}

/** Removes `token=` values from a URL before it is logged. */
export function redactUrl(url: string): string {
  return url.replace(/([?&](?:token|device_token)=)[^&#]*/gi, '$1[redacted]');
}
