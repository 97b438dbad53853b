/**
 * Every code an AppError carries, so that a misspelt one is a compile error. Jobs and the
 * retry schedule branch on some of them; the rest name the failure in the log.
 */
export type ErrorCode =
  // Request bodies (src/http/app.ts).
  | 'EMPTY_BODY'
  | 'INVALID_JSON'
  | 'TOO_DEEP'
  | 'INVALID_CURSOR'
  // Configuration, the database, the command line.
  | 'INVALID_CONFIG'
  | 'INVALID_ALLOWLIST'
  | 'MIGRATION_FAILED'
  | 'MIGRATION_PENDING'
  | 'WAL_SYNC_FAILED'
  | 'BACKUP_EXISTS'
  | 'BACKUP_CORRUPT'
  | 'NO_DATABASE'
  | 'NOT_SQLITE'
  | 'PORT_IN_USE'
  | 'USAGE'
  | 'NO_TOKEN'
  | 'NO_PUBLIC_URL'
  | 'REQUEST_REFUSED'
  | 'UNREACHABLE'
  // Downloading a recording (src/download), and answers of any upstream: `HTTP_<status>`.
  | 'URL_REFUSED'
  | 'DNS_FAILED'
  | 'CONNECTION_REFUSED'
  | 'HOST_UNREACHABLE'
  | 'CONNECT_TIMEOUT'
  | 'CONNECTION_RESET'
  | 'TLS_FAILED'
  | 'TIMEOUT'
  | 'NETWORK'
  | 'ABORTED'
  | 'NOT_FOUND'
  | 'NOT_AUDIO'
  | 'TOO_LARGE'
  | 'TRUNCATED'
  | 'TOO_MANY_REDIRECTS'
  | `HTTP_${number}`
  // Recording storage (src/storage).
  | 'INVALID_KEY'
  | 'STORAGE'
  | 'STORAGE_FULL'
  | 'STORAGE_READ_ONLY'
  | 'STORAGE_NOT_WRITABLE'
  | 'STORAGE_IO'
  | 'STORAGE_S3'
  // Deliveries (src/delivery/destination.ts, src/delivery/chatwoot-errors.ts).
  | 'DESTINATION_BLOCKED'
  | 'DESTINATION_GONE'
  | 'DELIVERY_ANSWER_LOST'
  | 'CHATWOOT_UNAVAILABLE'
  | 'CHATWOOT_OUTCOME_UNKNOWN'
  | 'CHATWOOT_BLOCKED'
  | 'CHATWOOT_GONE'
  | 'CHATWOOT_REJECTED'
  | 'CHATWOOT_NOT_AUDIO'
  | 'ATTACHMENT_UNREADABLE'
  // Anything else a job caught: retried.
  | 'UNEXPECTED';

/**
 * The one error type of the service. `statusCode` is the HTTP status when the error reaches
 * a client; `retryable` tells a job whether trying again later can help (false: fail now).
 */
interface AppErrorOptions {
  code: ErrorCode;
  statusCode?: number;
  retryable?: boolean;
  /** A delay the upstream asked for (Retry-After), honoured by the retry schedule. */
  retryAfterMs?: number;
  cause?: unknown;
}

export class AppError extends Error {
  readonly code: ErrorCode;
  readonly statusCode: number;
  readonly retryable: boolean;
  readonly retryAfterMs: number | undefined;

  constructor(message: string, options: AppErrorOptions) {
    super(message, { cause: options.cause });
    this.name = 'AppError';
    this.code = options.code;
    this.statusCode = options.statusCode ?? 500;
    this.retryable = options.retryable ?? false;
    this.retryAfterMs = options.retryAfterMs;
  }
}

/** Every `catch` goes through here, so nothing downstream deals with `unknown`. */
export function coerceError(value: unknown): Error {
  if (value instanceof Error) return value;
  return new Error(typeof value === 'string' ? value : JSON.stringify(value));
}
