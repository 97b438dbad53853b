/**
 * The one error type of the service. `statusCode` is the HTTP status when the error reaches
 * a client; `retryable` tells a job whether trying again later can help (false: fail now).
 */
interface AppErrorOptions {
  code: string;
  statusCode?: number;
  retryable?: boolean;
  /** A delay the upstream asked for (Retry-After), honoured by the retry schedule. */
  retryAfterMs?: number;
  cause?: unknown;
}

export class AppError extends Error {
  readonly code: string;
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
