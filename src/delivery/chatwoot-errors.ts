import { parseRetryAfter } from '../download/download-recording.ts';
import { AppError, coerceError } from '../errors.ts';

/**
 * What a failed Chatwoot request tells the delivery engine to do, as the AppError's `code`:
 *
 * - UNAVAILABLE: Chatwoot did not act on the request (throttled, unreachable): try again later,
 *   after `retryAfterMs` when Chatwoot said so (it normally does not).
 * - OUTCOME_UNKNOWN: the request may have been carried out (5xx, 408, reset, no answer in
 *   time): try again later, but a post must first be looked up by its source_id.
 * - BLOCKED: the settings are wrong (token, account, inbox, URL, inbox kind): retrying cannot
 *   help until an operator fixes them; show the destination as blocked.
 * - GONE: a contact or conversation we referred to no longer exists: resolve it again.
 * - REJECTED: Chatwoot refused this request for good (a 4xx such as a 422 validation).
 * - NOT_AUDIO: the message was posted, but Chatwoot did not take the attachment as audio.
 */
export const ChatwootErrorCode = {
  unavailable: 'CHATWOOT_UNAVAILABLE',
  outcomeUnknown: 'CHATWOOT_OUTCOME_UNKNOWN',
  blocked: 'CHATWOOT_BLOCKED',
  gone: 'CHATWOOT_GONE',
  rejected: 'CHATWOOT_REJECTED',
  notAudio: 'CHATWOOT_NOT_AUDIO',
} as const;
export type ChatwootErrorCode = (typeof ChatwootErrorCode)[keyof typeof ChatwootErrorCode];

const RETRYABLE: ReadonlySet<string> = new Set([ChatwootErrorCode.unavailable, ChatwootErrorCode.outcomeUnknown]);

export function chatwootError(code: ChatwootErrorCode, message: string, extra: { retryAfterMs?: number; cause?: unknown } = {}): AppError {
  return new AppError(`Chatwoot: ${message}`, { code, statusCode: 502, retryable: RETRYABLE.has(code), ...extra });
}

/** What a 404 of this request means: the account or inbox in the settings, or a record we hold an id of. */
export type NotFoundMeans = 'blocked' | 'gone';

interface FailedResponse {
  operation: string;
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  notFound: NotFoundMeans;
}

/** Classifies a non-2xx answer. `redact` removes the token from anything quoted back. */
export function classifyResponse(response: FailedResponse, redact: (text: string) => string): AppError {
  const { operation, status } = response;
  const said = redact(chatwootSaid(response.text));
  const what = `${operation} answered HTTP ${status}${said ? `: ${said}` : ''}`;
  if (status >= 300 && status < 400) {
    const location = redact(String(firstHeader(response.headers.location) ?? 'nowhere'));
    return chatwootError(ChatwootErrorCode.blocked, `${operation} was redirected to ${location}: set CHATWOOT_URL to the address Chatwoot answers on`);
  }
  if (status === 401) return chatwootError(ChatwootErrorCode.blocked, `${what} (${explainUnauthorized(response.text)})`);
  if (status === 403) return chatwootError(ChatwootErrorCode.blocked, `${what} (the token may not do this)`);
  if (status === 404) {
    if (!isChatwootNotFound(response.text)) {
      return chatwootError(ChatwootErrorCode.blocked, `${operation} answered HTTP 404 without Chatwoot's error body: is CHATWOOT_URL Chatwoot's address?`);
    }
    return response.notFound === 'gone'
      ? chatwootError(ChatwootErrorCode.gone, what)
      : chatwootError(ChatwootErrorCode.blocked, `${what} (check CHATWOOT_ACCOUNT_ID and the inbox id)`);
  }
  if (status === 429) {
    const retryAfterMs = parseRetryAfter(firstHeader(response.headers['retry-after']), Date.now());
    return chatwootError(ChatwootErrorCode.unavailable, `${operation} was throttled (HTTP 429)`, { retryAfterMs });
  }
  if (status === 408 || status >= 500) return chatwootError(ChatwootErrorCode.outcomeUnknown, what);
  // message_builder.rb: an inbox kind that does not fit the message mode is the settings' fault.
  if (status === 422 && /only allowed in Api inboxes/i.test(said)) {
    return chatwootError(ChatwootErrorCode.blocked, `${what} (use an API inbox, or private notes: CHATWOOT_MESSAGE_MODE)`);
  }
  return chatwootError(ChatwootErrorCode.rejected, what);
}

const NOT_SENT_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EAI_NONAME', 'EAI_FAIL', 'EHOSTUNREACH', 'ENETUNREACH', 'UND_ERR_CONNECT_TIMEOUT']);
const NO_ANSWER_CODES = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);

/**
 * A request that got no answer: refused or unreachable means it was never sent; a reset or a
 * timeout after sending means Chatwoot may have acted on it. The cause is rebuilt from its name,
 * code and message only, so nothing the request carried can ride along into a log.
 */
export function classifyNetworkError(operation: string, error: unknown, redact: (text: string) => string): AppError {
  if (error instanceof AppError) return error;
  const original = coerceError(error);
  const code = errorCode(original);
  const cause = Object.assign(new Error(redact(original.message)), { name: original.name, code });
  const detail = `${code ?? original.name}: ${redact(original.message)}`;
  if (code !== undefined && NOT_SENT_CODES.has(code)) {
    return chatwootError(ChatwootErrorCode.unavailable, `${operation} could not reach Chatwoot (${detail})`, { cause });
  }
  if (code !== undefined && NO_ANSWER_CODES.has(code)) {
    return chatwootError(ChatwootErrorCode.outcomeUnknown, `${operation} timed out waiting for Chatwoot (${detail})`, { cause });
  }
  if (code !== undefined && /^(ERR_TLS_|ERR_SSL_|CERT_|UNABLE_TO_|DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN)/.test(code)) {
    return chatwootError(ChatwootErrorCode.unavailable, `${operation}: TLS handshake with Chatwoot failed (${detail})`, { cause });
  }
  return chatwootError(ChatwootErrorCode.outcomeUnknown, `${operation} lost its connection to Chatwoot (${detail})`, { cause });
}

function errorCode(error: Error): string | undefined {
  const own = (error as { code?: unknown }).code;
  if (typeof own === 'string' && own !== 'UND_ERR_SOCKET') return own;
  const inner = (error.cause as { code?: unknown } | undefined)?.code;
  return typeof inner === 'string' ? inner : typeof own === 'string' ? own : undefined;
}

/** Chatwoot's error bodies: `{"message"}` (validation), `{"error"}`, or `{"errors": [...]}`. */
function chatwootSaid(text: string): string {
  try {
    const body = JSON.parse(text) as { message?: unknown; error?: unknown; errors?: unknown };
    if (typeof body.message === 'string') return body.message;
    if (typeof body.error === 'string') return body.error;
    if (Array.isArray(body.errors)) return body.errors.map(String).join('; ');
  } catch {
    // not JSON: a proxy's or a framework's page
  }
  return text.replace(/<[^>]*>/g, ' ').replace(/\s+/g, ' ').trim().slice(0, 200);
}

/** The `attributes` list of a 422 validation answer (request_exception_handler.rb#render_record_invalid). */
export function invalidAttributes(text: string): string[] {
  try {
    const body = JSON.parse(text) as { attributes?: unknown };
    return Array.isArray(body.attributes) ? body.attributes.map(String) : [];
  } catch {
    return [];
  }
}

function explainUnauthorized(text: string): string {
  const said = chatwootSaid(text);
  if (/Invalid Access Token/i.test(said)) return 'CHATWOOT_API_TOKEN is not a valid access token';
  if (/not authorized to access this account/i.test(said)) return "the token's user is not a member of CHATWOOT_ACCOUNT_ID";
  if (/not authorized for bots/i.test(said)) return "an agent bot's token cannot do this: use an agent's or administrator's access token";
  if (/sign in/i.test(said)) return 'no token reached Chatwoot: does a proxy drop the Api-Access-Token header?';
  return 'the token may not do this';
}

function isChatwootNotFound(text: string): boolean {
  try {
    return typeof (JSON.parse(text) as { error?: unknown }).error === 'string';
  } catch {
    return false;
  }
}

function firstHeader(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}
