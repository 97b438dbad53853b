import { pino, type Logger } from 'pino';
import pretty from 'pino-pretty';
import type { Config } from '../config/config.ts';

export type { Logger };

/**
 * The one logger. Pretty lines are written synchronously from this thread (no transport
 * worker) so that a crash never swallows the last lines an operator needs.
 */
export function createLogger(config: Pick<Config, 'logFormat' | 'logLevel'>, destination?: NodeJS.WritableStream): Logger {
  const options = { level: config.logLevel, base: undefined };
  if (config.logFormat === 'json') {
    return pino(options, destination ?? pino.destination({ sync: true }));
  }
  return pino(
    options,
    pretty({ destination: destination ?? 1, sync: true, colorize: false, singleLine: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' }),
  );
}

const SECRET_PARAMETERS = new Set(['token', 'device_token']);

/**
 * Removes secret query parameters from a URL (absolute, or a request path) before it is
 * logged: webhook URLs carry the token in the query string, since the WaVoIP panel has no
 * header field. Parameter names are compared decoded, so `%74oken=` is caught too.
 */
export function redactUrl(rawUrl: string): string {
  // A user:password@ in the authority is a secret too.
  const url = rawUrl.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^/?#]*@/i, '$1[redacted]@');
  const queryStart = url.indexOf('?');
  if (queryStart === -1) return url;
  const hashStart = url.indexOf('#', queryStart);
  const query = url.slice(queryStart + 1, hashStart === -1 ? undefined : hashStart);
  const redacted = query
    .split('&')
    .map((pair) => {
      const name = pair.split('=')[0] ?? '';
      let decoded = name;
      try {
        decoded = decodeURIComponent(name.replaceAll('+', ' '));
      } catch {
        // An undecodable name is logged as it came; it cannot be a token parameter.
      }
      return SECRET_PARAMETERS.has(decoded.toLowerCase()) ? `${name}=[redacted]` : pair;
    })
    .join('&');
  return `${url.slice(0, queryStart + 1)}${redacted}${hashStart === -1 ? '' : url.slice(hashStart)}`;
}
