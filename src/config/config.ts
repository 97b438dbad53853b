import path from 'node:path';
import ipaddr from 'ipaddr.js';
import { z } from 'zod';
import { AppError } from '../errors.ts';
import { buildRecordingUrl, CALL_ID_PLACEHOLDER } from '../calls/recording.ts';
import { checkRecordingUrl, parseAllowlist, type AllowlistEntry } from '../download/url-guard.ts';
import { coerceError } from '../errors.ts';
import { CHATWOOT_VARIABLES, chatwootConfig, missingChatwootSettings, type ChatwootConfig } from './chatwoot-settings.ts';
import { parseDuration, parseSize } from '../units.ts';

/**
 * The only reader of `process.env`. Every setting is listed, with its default, in the
 * README's configuration table; keep the two in step.
 */
export type { ChatwootConfig };

export interface Config {
  port: number;
  host: string;
  dataDir: string;
  database: DatabaseConfig;
  /** False: the schema is left to `wavoip-recordings migrate`, run before the replicas start. */
  migrateOnStart: boolean;
  recordingsStorage: RecordingsStorageConfig;
  /** Unset: generated into DATA_DIR/webhook-token. Null: webhooks need no token (`WEBHOOK_TOKEN=none`). */
  webhookToken: string | null | undefined;
  /** Unset: generated into DATA_DIR/api-token. */
  apiToken: string | undefined;
  /** The address WaVoIP reaches the service at, without a trailing slash; for the panel's URL. */
  publicUrl: string | undefined;
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
  /** Each URL is one destination of signed outbound webhooks; empty: none. */
  outboundWebhookUrls: string[];
  /** `whsec_…`. Unset: generated into DATA_DIR/outbound-webhook-secret (when there are URLs). */
  outboundWebhookSecret: string | undefined;
  recordingLinkTtlMs: number;
  deliveryConcurrency: number;
  deliveryMaxWaitMs: number;
  /** Null: Chatwoot delivery is off (none of CHATWOOT_URL, _API_TOKEN, _ACCOUNT_ID, _INBOX_ID set). */
  chatwoot: ChatwootConfig | null;
  dashboard: DashboardConfig;
  /** Proxies (addresses or CIDR ranges) whose X-Forwarded-For is believed; empty: none. */
  trustProxy: string[];
  authFailureLimit: number;
  shutdownGraceMs: number;
  logFormat: 'pretty' | 'json';
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
}

interface DashboardConfig {
  /** False: no pages at `/`, and no sign-in (the API takes only the bearer token). */
  enabled: boolean;
  /** Unset: people sign in with the API token. Set: with this password, or the API token. */
  password: string | undefined;
  /** A signed-in session ends this long after sign-in. */
  sessionTtlMs: number;
}

function toDuration(text: string, ctx: z.RefinementCtx): number {
  const ms = parseDuration(text);
  if (ms === undefined || ms <= 0) {
    ctx.addIssue({ code: 'custom', message: `"${text}" is not a duration such as 500ms, 30s, 5m or 4h` });
    return z.NEVER;
  }
  return ms;
}

export type DatabaseConfig =
  | { dialect: 'sqlite'; filename: string }
  /** `url` holds the password: log `redactedUrl` instead. */
  | { dialect: 'postgres'; url: string; redactedUrl: string; poolSize: number };

export type RecordingsStorageConfig =
  | { kind: 'local'; dir: string }
  | {
      kind: 's3';
      bucket: string;
      /** '' or a prefix ending in '/'. */
      prefix: string;
      /** Unset: AWS itself. Credentials come from the AWS SDK's usual chain (AWS_ACCESS_KEY_ID…). */
      endpoint: string | undefined;
      region: string;
      forcePathStyle: boolean;
    };

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

/** `.env.example` holds this placeholder: copied as it is, it would protect nothing. */
const PLACEHOLDER_SECRET = /^change-?me/i;

function toSecret(text: string, ctx: z.RefinementCtx): string {
  const secret = text.trim();
  if (PLACEHOLDER_SECRET.test(secret)) {
    ctx.addIssue({
      code: 'custom',
      message: 'is the placeholder from .env.example: remove the line (the service then generates a token into DATA_DIR) or set a random one, e.g. $(openssl rand -hex 24)',
    });
  } else if (secret.length < 8) {
    ctx.addIssue({ code: 'custom', message: 'must be at least 8 characters' });
  }
  return secret;
}

const optionalSecret = z.string().optional().transform((text, ctx) => (text === undefined ? undefined : toSecret(text, ctx)));


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
  DATABASE_POOL_SIZE: positiveInteger(10),
  MIGRATE_ON_START: z.enum(['true', 'false']).default('true').transform((text) => text === 'true'),
  RECORDINGS_STORAGE: z.string().optional(),
  S3_ENDPOINT: z
    .string()
    .optional()
    .refine((text) => text === undefined || /^https?:\/\/[^/?#]+\/?$/.test(text), 'must be an http(s) origin such as https://s3.example.com:9000'),
  S3_REGION: z.string().min(1).optional(),
  S3_FORCE_PATH_STYLE: z.enum(['true', 'false']).default('false').transform((text) => text === 'true'),
  // `none` is the one way to take webhooks without a token: never the default.
  WEBHOOK_TOKEN: z
    .string()
    .optional()
    .transform((text, ctx) => (text === undefined ? undefined : text.trim() === 'none' ? null : toSecret(text, ctx))),
  API_TOKEN: optionalSecret,
  PUBLIC_URL: z
    .string()
    .trim()
    .refine((text) => /^https?:\/\/[^/?#\s]+(\/[^?#\s]*)?$/.test(text) && URL.canParse(text), 'must be the http(s) address WaVoIP reaches the service at, such as https://recordings.example.com')
    .transform((text) => text.replace(/\/+$/, ''))
    .optional(),
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
  DASHBOARD: z.enum(['true', 'false']).default('true').transform((text) => text === 'true'),
  DASHBOARD_PASSWORD: z
    .string()
    .optional()
    .refine((text) => text === undefined || text.trim().length >= 12, 'must be at least 12 characters'),
  DASHBOARD_SESSION_TTL: duration('12h'),
  OUTBOUND_WEBHOOK_URLS: z
    .string()
    .optional()
    .transform((text, ctx) => {
      const urls = (text ?? '').split(',').map((entry) => entry.trim()).filter((entry) => entry !== '');
      const bad = urls.findIndex((url) => !/^https?:\/\/[^/?#\s]+/.test(url) || !URL.canParse(url) || !hasDecodableCredentials(url));
      if (bad !== -1) {
        // Named by position: a URL may carry a key, and this message is printed.
        ctx.addIssue({ code: 'custom', message: `URL number ${bad + 1} is not an http(s) URL; list receivers separated by commas, such as https://crm.example.com/hooks/calls` });
        return z.NEVER;
      }
      if (new Set(urls).size !== urls.length) {
        ctx.addIssue({ code: 'custom', message: 'lists the same URL twice' });
        return z.NEVER;
      }
      return urls;
    }),
  // The Standard Webhooks form: whsec_ and base64 of 24 to 64 random bytes.
  OUTBOUND_WEBHOOK_SECRET: z
    .string()
    .trim()
    .refine((text) => isWebhookSecret(text), 'must be whsec_ followed by the base64 of 24 to 64 random bytes, such as whsec_$(openssl rand -base64 32)')
    .optional(),
  RECORDING_LINK_TTL: duration('7d'),
  // Deliveries wait on the destination's answers: a few at once hide its latency without flooding it.
  DELIVERY_CONCURRENCY: positiveInteger(4),
  DELIVERY_MAX_WAIT: duration('3d'),
  ...CHATWOOT_VARIABLES,
  AUTH_FAILURE_LIMIT: positiveInteger(10),
  SHUTDOWN_GRACE: duration('5s'),
  // Only named proxies: `true` or a hop count would believe a forged X-Forwarded-For from any
  // client that reaches the service directly, and let it dodge or aim the token lock-out.
  TRUST_PROXY: z
    .string()
    .optional()
    .transform((text, ctx) => {
      const addresses = (text ?? '').split(',').map((entry) => entry.trim()).filter((entry) => entry !== '');
      if (addresses.every(isAddressOrRange)) return addresses;
      ctx.addIssue({ code: 'custom', message: 'must be a comma-separated list of proxy addresses or CIDR ranges, such as 10.0.0.0/8,127.0.0.1' });
      return z.NEVER;
    }),
  LOG_FORMAT: z.enum(['pretty', 'json']).default('pretty'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
}).superRefine((settings, ctx) => {
  const problem = (variable: string, message: string) => ctx.addIssue({ code: 'custom', path: [variable], message });
  if (settings.POLL_INITIAL_DELAY > settings.POLL_MAX_DELAY) problem('POLL_INITIAL_DELAY', 'must not be longer than POLL_MAX_DELAY');
  if (settings.POLL_INITIAL_DELAY >= settings.POLL_MAX_WAIT) problem('POLL_INITIAL_DELAY', 'must be shorter than POLL_MAX_WAIT');
  if (settings.JOB_LEASE < MIN_JOB_LEASE_MS) problem('JOB_LEASE', 'must be at least 1s');
  for (const [variable, message] of missingChatwootSettings(settings)) problem(variable, message);
  // A template that the allow-list refuses would fail every poll and every READY without a URL.
  try {
    checkRecordingUrl(buildRecordingUrl(settings.WAVOIP_RECORDING_URL_TEMPLATE, '0'), settings.RECORDING_URL_ALLOWLIST);
  } catch (error) {
    problem('WAVOIP_RECORDING_URL_TEMPLATE', `is refused by RECORDING_URL_ALLOWLIST: ${coerceError(error).message}`);
  }
});

const MIN_JOB_LEASE_MS = 1_000;

/** Every variable the service reads: the README's configuration table lists exactly these. */
export const CONFIG_VARIABLES: readonly string[] = Object.keys(environmentSchema.shape);

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
    database: parseDatabaseUrl(settings.DATABASE_URL, dataDir, settings.DATABASE_POOL_SIZE),
    migrateOnStart: settings.MIGRATE_ON_START,
    recordingsStorage: parseRecordingsStorage(settings, dataDir, env),
    webhookToken: settings.WEBHOOK_TOKEN,
    apiToken: settings.API_TOKEN,
    publicUrl: settings.PUBLIC_URL,
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
    outboundWebhookUrls: settings.OUTBOUND_WEBHOOK_URLS,
    outboundWebhookSecret: settings.OUTBOUND_WEBHOOK_SECRET,
    recordingLinkTtlMs: settings.RECORDING_LINK_TTL,
    deliveryConcurrency: settings.DELIVERY_CONCURRENCY,
    deliveryMaxWaitMs: settings.DELIVERY_MAX_WAIT,
    chatwoot: chatwootConfig(settings),
    dashboard: { enabled: settings.DASHBOARD, password: settings.DASHBOARD_PASSWORD?.trim(), sessionTtlMs: settings.DASHBOARD_SESSION_TTL },
    trustProxy: settings.TRUST_PROXY,
    authFailureLimit: settings.AUTH_FAILURE_LIMIT,
    shutdownGraceMs: settings.SHUTDOWN_GRACE,
    logFormat: settings.LOG_FORMAT,
    logLevel: settings.LOG_LEVEL,
  });
}

function parseDatabaseUrl(url: string | undefined, dataDir: string, poolSize: number): DatabaseConfig {
  if (url === undefined) return { dialect: 'sqlite', filename: path.join(dataDir, 'wavoip-recordings.sqlite') };
  const text = url.trim();
  const sqlite = /^sqlite:(?:\/\/)?(.*)$/.exec(text);
  if (sqlite?.[1]) return { dialect: 'sqlite', filename: path.resolve(sqlite[1]) };
  if (/^postgres(?:ql)?:\/\//.test(text) && URL.canParse(text)) {
    const redacted = new URL(text);
    if (redacted.password !== '') redacted.password = '[redacted]';
    // pg also reads password=, sslpassword= and sslkey= from the query: none of it is logged.
    redacted.search = '';
    return { dialect: 'postgres', url: text, redactedUrl: redacted.toString(), poolSize };
  }
  const problem = sqlite ? 'sqlite: needs a file path' : `"${text.split(':')[0]}:" is not supported`;
  throw new AppError(
    `Invalid configuration: DATABASE_URL: ${problem}; use postgres://user:password@host:5432/database, sqlite:<path>, ` +
      `or leave it unset for ${path.join(dataDir, 'wavoip-recordings.sqlite')}`,
    { code: 'INVALID_CONFIG' },
  );
}

function parseRecordingsStorage(
  settings: { RECORDINGS_STORAGE?: string | undefined; S3_ENDPOINT?: string | undefined; S3_REGION?: string | undefined; S3_FORCE_PATH_STYLE: boolean },
  dataDir: string,
  env: NodeJS.ProcessEnv,
): RecordingsStorageConfig {
  const text = settings.RECORDINGS_STORAGE?.trim();
  if (text === undefined) return { kind: 'local', dir: path.join(dataDir, 'recordings') };
  const s3 = /^s3:\/\/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:\/(.*))?$/.exec(text);
  if (s3) {
    const prefix = (s3[2] ?? '').replace(/^\/+|\/+$/g, '');
    return {
      kind: 's3',
      bucket: s3[1]!,
      prefix: prefix === '' ? '' : `${prefix}/`,
      endpoint: settings.S3_ENDPOINT?.replace(/\/$/, ''),
      // The SDK's own variables first, so that a standard AWS setup needs nothing more.
      region: settings.S3_REGION ?? env.AWS_REGION ?? env.AWS_DEFAULT_REGION ?? 'us-east-1',
      forcePathStyle: settings.S3_FORCE_PATH_STYLE,
    };
  }
  if (!text.includes('://')) return { kind: 'local', dir: path.resolve(text) };
  throw new AppError(
    'Invalid configuration: RECORDINGS_STORAGE: use s3://bucket/prefix, a directory path, or leave it unset for DATA_DIR/recordings',
    { code: 'INVALID_CONFIG' },
  );
}

function isWebhookSecret(text: string): boolean {
  const match = /^whsec_([A-Za-z0-9+/]+={0,2})$/.exec(text);
  if (match === null) return false;
  const bytes = Buffer.from(match[1] as string, 'base64').length;
  return bytes >= 24 && bytes <= 64;
}

/** Credentials in a URL are sent as Basic auth, decoded: `a%zz` cannot be. */
function hasDecodableCredentials(text: string): boolean {
  const url = new URL(text);
  try {
    decodeURIComponent(url.username);
    decodeURIComponent(url.password);
    return true;
  } catch {
    return false;
  }
}

/** A dotted-quad IPv4 or an IPv6 address, optionally with a /prefix; not `1` or `0x7f.1` forms. */
function isAddressOrRange(entry: string): boolean {
  const [address = '', prefix, ...rest] = entry.split('/');
  if (rest.length > 0 || !(ipaddr.IPv4.isValidFourPartDecimal(address) || ipaddr.IPv6.isValid(address))) return false;
  if (prefix === undefined) return true;
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
