import path from 'node:path';
import ipaddr from 'ipaddr.js';
import { z } from 'zod';
import { AppError } from '../errors.ts';
import { buildRecordingUrl, CALL_ID_PLACEHOLDER } from '../calls/recording.ts';
import { checkRecordingUrl, parseAllowlist, type AllowlistEntry } from '../download/url-guard.ts';
import { coerceError } from '../errors.ts';
import { parseDuration, parseSize } from '../units.ts';

/**
 * The only reader of `process.env`. Every setting is listed, with its default, in the
 * README's configuration table; keep the two in step.
 */
export interface Config {
  port: number;
  host: string;
  dataDir: string;
  database: { dialect: 'sqlite'; filename: string };
  webhookToken: string | undefined;
  apiToken: string | undefined;
  recordingUrlAllowlist: AllowlistEntry[];
  recordingMaxBytes: number;
  recordingUrlTemplate: string;
  pollInitialDelayMs: number;
  pollMaxDelayMs: number;
  pollMaxWaitMs: number;
  downloadConcurrency: number;
  jobLeaseMs: number;
  eventRetentionMs: number;
  /** Unset: recordings are kept for ever. */
  recordingRetentionMs: number | undefined;
  webhookSilenceWarningMs: number;
  trustProxy: boolean | number | string[];
  authFailureLimit: number;
  shutdownGraceMs: number;
  logFormat: 'pretty' | 'json';
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
}

function toDuration(text: string, ctx: z.RefinementCtx): number {
  const ms = parseDuration(text);
  if (ms === undefined || ms <= 0) {
    ctx.addIssue({ code: 'custom', message: `"${text}" is not a duration such as 500ms, 30s, 5m or 4h` });
    return z.NEVER;
  }
  return ms;
}

const duration = (fallback: string) => z.string().default(fallback).transform(toDuration);
const optionalDuration = z
  .string()
  .optional()
  .transform((text, ctx) => (text === undefined ? undefined : toDuration(text, ctx)));

const positiveInteger = (fallback: number) =>
  z
    .string()
    .regex(/^[1-9]\d{0,5}$/, 'must be a whole number from 1 to 999999')
    .default(String(fallback))
    .transform(Number);

const optionalSecret = z
  .string()
  .optional()
  .transform((text) => text?.trim())
  .refine((text) => text === undefined || text.length >= 8, 'must be at least 8 characters');

const environmentSchema = z.object({
  PORT: z
    .string()
    .regex(/^\d{1,5}$/, 'must be a port number from 0 to 65535')
    .default('3000')
    .transform(Number)
    .refine((port) => port <= 65_535, 'must be a port number from 0 to 65535'),
  HOST: z.string().min(1).default('0.0.0.0'),
  DATA_DIR: z.string().min(1).default('./data'),
  DATABASE_URL: z.string().optional(),
  WEBHOOK_TOKEN: optionalSecret,
  API_TOKEN: optionalSecret,
  RECORDING_URL_ALLOWLIST: z
    .string()
    .default('storage.wavoip.com')
    .transform((text, ctx) => {
      try {
        const entries = parseAllowlist(text);
        if (entries.length > 0) return entries;
        ctx.addIssue({ code: 'custom', message: 'must list at least one host, such as storage.wavoip.com' });
      } catch (error) {
        ctx.addIssue({ code: 'custom', message: coerceError(error).message });
      }
      return z.NEVER;
    }),
  RECORDING_MAX_BYTES: z
    .string()
    .default('512MiB')
    .transform((text, ctx) => {
      const bytes = parseSize(text);
      if (bytes === undefined || bytes <= 0) {
        ctx.addIssue({ code: 'custom', message: `"${text}" is not a size such as 1048576, 64KiB, 512MiB or 2GiB` });
        return z.NEVER;
      }
      return bytes;
    }),
  WAVOIP_RECORDING_URL_TEMPLATE: z
    .string()
    .default(`https://storage.wavoip.com/${CALL_ID_PLACEHOLDER}`)
    .refine((text) => text.includes(CALL_ID_PLACEHOLDER), `must contain ${CALL_ID_PLACEHOLDER}`)
    .refine((text) => URL.canParse(text.replace(CALL_ID_PLACEHOLDER, 'x')), 'must be an absolute URL'),
  POLL_INITIAL_DELAY: duration('30s'),
  POLL_MAX_DELAY: duration('30m'),
  POLL_MAX_WAIT: duration('4h'),
  // Downloads wait on the network, not the CPU: a few in parallel hide a slow storage's latency.
  DOWNLOAD_CONCURRENCY: positiveInteger(8),
  JOB_LEASE: duration('60s'),
  EVENT_RETENTION: duration('30d'),
  RECORDING_RETENTION: optionalDuration,
  WEBHOOK_SILENCE_WARNING: duration('24h'),
  AUTH_FAILURE_LIMIT: positiveInteger(10),
  SHUTDOWN_GRACE: duration('5s'),
  TRUST_PROXY: z
    .string()
    .default('false')
    .transform((text, ctx) => {
      const value = text.trim().toLowerCase();
      if (value === 'false') return false;
      if (value === 'true') return true;
      if (/^\d{1,2}$/.test(value)) return Number(value);
      const addresses = value.split(',').map((entry) => entry.trim()).filter((entry) => entry !== '');
      if (addresses.length > 0 && addresses.every(isAddressOrRange)) return addresses;
      ctx.addIssue({ code: 'custom', message: 'must be false, true, a number of proxy hops, or a comma-separated list of proxy addresses or CIDR ranges' });
      return z.NEVER;
    }),
  LOG_FORMAT: z.enum(['pretty', 'json']).default('pretty'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
}).superRefine((settings, ctx) => {
  const problem = (variable: string, message: string) => ctx.addIssue({ code: 'custom', path: [variable], message });
  if (settings.POLL_INITIAL_DELAY > settings.POLL_MAX_DELAY) problem('POLL_INITIAL_DELAY', 'must not be longer than POLL_MAX_DELAY');
  if (settings.POLL_INITIAL_DELAY >= settings.POLL_MAX_WAIT) problem('POLL_INITIAL_DELAY', 'must be shorter than POLL_MAX_WAIT');
  if (settings.JOB_LEASE < MIN_JOB_LEASE_MS) problem('JOB_LEASE', 'must be at least 1s');
  // A template that the allow-list refuses would fail every poll and every READY without a URL.
  try {
    checkRecordingUrl(buildRecordingUrl(settings.WAVOIP_RECORDING_URL_TEMPLATE, '0'), settings.RECORDING_URL_ALLOWLIST);
  } catch (error) {
    problem('WAVOIP_RECORDING_URL_TEMPLATE', `is refused by RECORDING_URL_ALLOWLIST: ${coerceError(error).message}`);
  }
});

const MIN_JOB_LEASE_MS = 1_000;

/**
 * Reads the settings from an environment; throws an AppError naming every bad variable.
 * A variable set to an empty string counts as unset (as `API_TOKEN=` in a .env file means).
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const setVariables = Object.fromEntries(Object.entries(env).filter(([, value]) => value !== undefined && value.trim() !== ''));
  const parsed = environmentSchema.safeParse(setVariables);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`);
    throw new AppError(`Invalid configuration: ${problems.join('; ')}`, { code: 'INVALID_CONFIG' });
  }
  const settings = parsed.data;
  const dataDir = path.resolve(settings.DATA_DIR);
  return Object.freeze({
    port: settings.PORT,
    host: settings.HOST,
    dataDir,
    database: parseDatabaseUrl(settings.DATABASE_URL, dataDir),
    webhookToken: settings.WEBHOOK_TOKEN,
    apiToken: settings.API_TOKEN,
    recordingUrlAllowlist: settings.RECORDING_URL_ALLOWLIST,
    recordingMaxBytes: settings.RECORDING_MAX_BYTES,
    recordingUrlTemplate: settings.WAVOIP_RECORDING_URL_TEMPLATE,
    pollInitialDelayMs: settings.POLL_INITIAL_DELAY,
    pollMaxDelayMs: settings.POLL_MAX_DELAY,
    pollMaxWaitMs: settings.POLL_MAX_WAIT,
    downloadConcurrency: settings.DOWNLOAD_CONCURRENCY,
    jobLeaseMs: settings.JOB_LEASE,
    eventRetentionMs: settings.EVENT_RETENTION,
    recordingRetentionMs: settings.RECORDING_RETENTION,
    webhookSilenceWarningMs: settings.WEBHOOK_SILENCE_WARNING,
    trustProxy: settings.TRUST_PROXY,
    authFailureLimit: settings.AUTH_FAILURE_LIMIT,
    shutdownGraceMs: settings.SHUTDOWN_GRACE,
    logFormat: settings.LOG_FORMAT,
    logLevel: settings.LOG_LEVEL,
  });
}

function parseDatabaseUrl(url: string | undefined, dataDir: string): Config['database'] {
  if (url === undefined || url.trim() === '') {
    return { dialect: 'sqlite', filename: path.join(dataDir, 'wavoip-recordings.sqlite') };
  }
  const sqlite = /^sqlite:(?:\/\/)?(.*)$/.exec(url.trim());
  if (sqlite?.[1]) return { dialect: 'sqlite', filename: path.resolve(sqlite[1]) };
  const problem = sqlite ? 'sqlite: needs a file path' : `"${url.split(':')[0]}:" is not supported`;
  throw new AppError(
    `Invalid configuration: DATABASE_URL: ${problem}; use sqlite:<path> (or leave it unset for ${path.join(dataDir, 'wavoip-recordings.sqlite')})`,
    { code: 'INVALID_CONFIG' },
  );
}

function isAddressOrRange(entry: string): boolean {
  if (ipaddr.isValid(entry)) return true;
  try {
    ipaddr.parseCIDR(entry);
    return true;
  } catch {
    return false;
  }
}

/** How a client on this machine reaches a service listening on `host` (any address → loopback). */
export function localServiceUrl(host: string, port: number): string {
  const reachable = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host;
  return `http://${reachable.includes(':') ? `[${reachable}]` : reachable}:${port}`;
}
