import { createHash, randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Dispatcher } from 'undici';
import { parseFile } from 'music-metadata';
import type { RecordingFacts } from '../calls/recording.ts';
import { AppError, coerceError, type ErrorCode } from '../errors.ts';
import { assertRoom, assertRoomForRecording, measureFreeSpace, removeTempFile, storageFault } from '../storage/storage-faults.ts';
import type { HttpClient } from './http-client.ts';
import { sniffAudio, SNIFF_BYTES } from './sniff-audio.ts';
import type { SniffedAudio } from './sniff-audio.ts';
import { checkRecordingUrl } from './url-guard.ts';
import type { AllowlistEntry } from './url-guard.ts';

interface DownloadRecordingOptions {
  url: string;
  allowlist: readonly AllowlistEntry[];
  client: HttpClient;
  maxBytes: number;
  /** Must be on the same filesystem as the store, so moving the file in is an atomic rename. */
  tmpDir: string;
  signal: AbortSignal;
  /** Free space the download must leave on tmpDir's disk: the store's `tmpHeadroomBytes`. */
  storageHeadroomBytes: number;
}

export interface DownloadedRecording extends RecordingFacts {
  /** A fsynced `<random>.part` file in tmpDir; the caller moves it into the store. */
  tempPath: string;
  extension: string;
  finalUrl: string;
}

const MAX_REDIRECTS = 5;
const EARLY_SYNC_BYTES = 32 * 1024 * 1024;
/** How often a download checks, as it writes, that it leaves the database its headroom. */
const ROOM_CHECK_BYTES = 1024 * 1024;
const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);
// Client errors where the same request may well succeed later; other 4xx will not change by
// retrying. Every 5xx is the storage's own trouble and is retried.
const RETRYABLE_CLIENT_STATUSES = new Set([408, 425, 429]);
const TIMEOUT_ERROR_CODES = new Set(['UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);

/**
 * Fetches a recording into a temp file, checking every redirect hop against the allow-list and
 * refusing anything that is not audio. On failure throws an AppError whose `retryable` tells the
 * job whether to try again, and leaves no file behind.
 */
export async function downloadRecording(options: DownloadRecordingOptions): Promise<DownloadedRecording> {
  const { signal } = options;
  // Measured before the request: once the headers are in, the body is read at once (see
  // writeBodyToFile), never after waiting for the disk.
  const headroom = options.storageHeadroomBytes;
  const free = await measureFreeSpace(options.tmpDir);
  assertRoom(free, { needed: 0, written: 0, headroom });
  const { response, finalUrl } = await requestFollowingRedirects(options);
  assertSuccessStatus(response);

  const contentLength = readContentLength(response.headers['content-length']);
  if (contentLength !== undefined && contentLength > options.maxBytes) {
    discardBody(response.body);
    throw tooLarge(`Content-Length ${contentLength} exceeds the limit of ${options.maxBytes} bytes`);
  }

  try {
    if (contentLength !== undefined) assertRoom(free, { needed: contentLength, written: 0, headroom });
  } catch (error) {
    discardBody(response.body);
    throw error;
  }

  const tempPath = join(options.tmpDir, `${randomUUID()}.part`);
  try {
    const written = await writeBodyToFile(response.body, tempPath, {
      maxBytes: options.maxBytes,
      signal,
      contentLength,
      tmpDir: options.tmpDir,
      headroom,
    });
    const metadata = await readAudioMetadata(tempPath);
    return {
      tempPath,
      size: written.size,
      sha256: written.sha256,
      contentType: written.audio.contentType,
      extension: written.audio.extension,
      ...metadata,
      finalUrl: finalUrl.href,
    };
  } catch (error) {
    discardBody(response.body);
    // Never left behind, and a failed removal (read-only storage) never hides why we stopped.
    await removeTempFile(tempPath);
    throw signal.aborted ? abortedError(error) : error;
  }
}

async function requestFollowingRedirects(
  options: DownloadRecordingOptions,
): Promise<{ response: Dispatcher.ResponseData; finalUrl: URL }> {
  const visited = new Set<string>();
  let next = options.url;
  for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
    const { url, allowPrivate } = checkRecordingUrl(next, options.allowlist);
    if (visited.has(url.href)) throw tooManyRedirects(`redirect loop back to ${url.href}`);
    visited.add(url.href);

    const response = await requestOnce(options.client, url, allowPrivate, options.signal);
    if (!REDIRECT_STATUSES.has(response.statusCode)) return { response, finalUrl: url };
    discardBody(response.body);
    const location = firstHeader(response.headers.location);
    if (location === undefined) {
      throw new AppError(`HTTP ${response.statusCode} redirect without a Location header`, {
        code: `HTTP_${response.statusCode}`,
        statusCode: 502,
        retryable: false,
      });
    }
    next = URL.canParse(location, url.href) ? new URL(location, url).href : location;
  }
  throw tooManyRedirects(`more than ${MAX_REDIRECTS} redirects`);
}

async function requestOnce(client: HttpClient, url: URL, allowPrivate: boolean, signal: AbortSignal) {
  try {
    return await client.request(url, { signal, allowPrivate });
  } catch (error) {
    if (signal.aborted) throw abortedError(error);
    throw connectionFailure(error, url) ?? toNetworkError(error);
  }
}

/**
 * A storage that could not be reached at all is the operator's to fix (DNS, firewall, proxy,
 * certificates), not a recording "not published yet": say which, by the error's code.
 */
export function connectionFailure(error: unknown, url: URL): AppError | undefined {
  if (error instanceof AppError) return undefined;
  const cause = coerceError(error);
  const code = (cause as { code?: unknown }).code;
  if (typeof code !== 'string') return undefined;
  const what = describeConnectionCode(code);
  if (what === undefined) return undefined;
  return new AppError(`could not reach ${url.host}: ${what.reason}`, { code: what.code, statusCode: 502, retryable: true, cause });
}

function describeConnectionCode(code: string): { code: ErrorCode; reason: string } | undefined {
  if (['ENOTFOUND', 'EAI_AGAIN', 'EAI_NONAME', 'EAI_FAIL', 'EAI_NODATA', 'ENODATA'].includes(code)) {
    return { code: 'DNS_FAILED', reason: code === 'EAI_AGAIN' ? 'DNS lookup failed (temporary failure in name resolution)' : 'DNS lookup failed' };
  }
  if (code === 'ECONNREFUSED') return { code: 'CONNECTION_REFUSED', reason: 'connection refused' };
  if (code === 'EHOSTUNREACH' || code === 'ENETUNREACH') return { code: 'HOST_UNREACHABLE', reason: 'no route to host' };
  if (code === 'ETIMEDOUT') return { code: 'CONNECT_TIMEOUT', reason: 'connection timed out' };
  if (code === 'ECONNRESET' || code === 'EPIPE') return { code: 'CONNECTION_RESET', reason: 'connection reset before an answer' };
  if (code === 'EPROTO' || /^(ERR_TLS_|ERR_SSL_|CERT_|UNABLE_TO_|DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN|HOSTNAME_MISMATCH)/.test(code)) {
    return { code: 'TLS_FAILED', reason: `TLS handshake failed (${code})` };
  }
  return undefined;
}

function assertSuccessStatus(response: Dispatcher.ResponseData): void {
  const status = response.statusCode;
  if (status === 200) return;
  discardBody(response.body);
  const retryAfterMs = parseRetryAfter(firstHeader(response.headers['retry-after']), Date.now());
  if (status === 404) {
    throw new AppError('Recording not found (HTTP 404): not published yet, or deleted', {
      code: 'NOT_FOUND',
      statusCode: 404,
      retryable: true,
      retryAfterMs,
    });
  }
  throw new AppError(`Recording request answered HTTP ${status}`, {
    code: `HTTP_${status}`,
    statusCode: 502,
    retryable: status >= 500 || RETRYABLE_CLIENT_STATUSES.has(status),
    retryAfterMs,
  });
}

/** Retry-After is either delay-seconds or an HTTP date; anything unparsable is ignored. */
export function parseRetryAfter(value: string | undefined, nowMs: number): number | undefined {
  if (value === undefined) return undefined;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000;
  // Date.parse would also read "-5" or "2025" as dates; HTTP dates start with a day name.
  if (!/^[A-Za-z]/.test(trimmed)) return undefined;
  const dateMs = Date.parse(trimmed);
  if (Number.isNaN(dateMs)) return undefined;
  return Math.max(0, dateMs - nowMs);
}

interface WriteContext {
  maxBytes: number;
  signal: AbortSignal;
  contentLength: number | undefined;
  tmpDir: string;
  headroom: number;
}

interface WrittenBody {
  size: number;
  sha256: string;
  audio: SniffedAudio;
}

/**
 * Streams to disk while hashing, so a 90-minute call never sits in memory. A pipeline rather
 * than a read-then-write loop: the next chunk arrives from the network while the last one is
 * being written, and backpressure still bounds what is buffered.
 */
async function writeBodyToFile(body: Readable, tempPath: string, context: WriteContext): Promise<WrittenBody> {
  const hash = createHash('sha256');
  const head = Buffer.alloc(SNIFF_BYTES);
  let size = 0;
  let audio: SniffedAudio | undefined;
  // Reading starts at once (what undici buffers would be lost with the count if the connection
  // dropped while we waited for the disk). The syncs go through a descriptor of our own, opened
  // as soon as the file exists and closed only by us: a writeback error is reported to it
  // whichever descriptor wrote the page, and it cannot be closed (and its number reused) under
  // a running sync.
  const file = createWriteStream(tempPath, { flags: 'wx' });
  let handle: FileHandle | undefined;
  const opening = once(file, 'open').then(async () => (handle = await open(tempPath, 'r+')));
  opening.catch(() => undefined); // the pipeline reports a file that could not be created
  // Flushing to disk while the download goes on leaves the final fsync only the last stretch.
  let syncedUpTo = 0;
  let syncing: Promise<void> | undefined;
  let syncError: unknown;
  const syncSoFar = () => {
    if (syncing !== undefined || handle === undefined || size - syncedUpTo < EARLY_SYNC_BYTES) return;
    syncedUpTo = size;
    syncing = handle
      .datasync()
      .catch((error: unknown) => void (syncError ??= error))
      .finally(() => (syncing = undefined));
  };
  // Free space is checked as the file grows, off the data path like the syncs: a body without
  // Content-Length, or other downloads at the same time, must not take the database's room.
  let roomCheckedAt = 0;
  let checkingRoom: Promise<void> | undefined;
  let roomError: unknown;
  const checkRoomSoFar = () => {
    if (checkingRoom !== undefined || size - roomCheckedAt < ROOM_CHECK_BYTES) return;
    roomCheckedAt = size;
    const needed = context.contentLength !== undefined ? Math.max(0, context.contentLength - size) : 0;
    checkingRoom = assertRoomForRecording(context.tmpDir, { needed, written: size, headroom: context.headroom })
      .catch((error: unknown) => void (roomError ??= error))
      .finally(() => (checkingRoom = undefined));
  };
  const inspect = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      if (roomError !== undefined) return done(coerceError(roomError));
      size += chunk.length;
      syncSoFar();
      checkRoomSoFar();
      if (size > context.maxBytes) return done(tooLarge(`body exceeds the limit of ${context.maxBytes} bytes`));
      hash.update(chunk);
      if (audio !== undefined || size - chunk.length >= SNIFF_BYTES) return done(null, chunk);
      chunk.copy(head, size - chunk.length);
      if (size < SNIFF_BYTES) return done(null, chunk);
      // Judge as soon as the head is full: an endless error page is refused without waiting.
      sniffAudio(head).then(
        (sniffed) => {
          audio = sniffed;
          done(null, chunk);
        },
        (error: unknown) => done(coerceError(error)),
      );
    },
  });
  let fileError: unknown;
  file.once('error', (error) => (fileError = error));
  try {
    try {
      await pipeline(body, inspect, file);
    } catch (error) {
      if (error instanceof AppError || context.signal.aborted) throw error;
      if (fileError !== undefined) throw temporaryFileError((fileError as { syscall?: unknown }).syscall === 'open' ? 'create' : 'write', fileError);
      // undici itself fails a body that ends short of its Content-Length; naming the shortfall
      // tells a truncated transfer from any other network error.
      throw toNetworkError(error, describeShortfall(size, context.contentLength));
    }
    if (size === 0) throw new AppError('Recording body is empty', { code: 'EMPTY_BODY', statusCode: 502, retryable: true });
    audio ??= await sniffAudio(head.subarray(0, size));
    const syncHandle = await runFileOperation('open', () => opening);
    await syncing;
    if (syncError !== undefined) throw temporaryFileError('fsync', syncError);
    await runFileOperation('fsync', () => syncHandle.sync());
  } finally {
    // Never close the descriptor under a sync still running on it.
    await syncing;
    await checkingRoom;
    await opening.then((opened) => opened.close(), () => undefined);
  }
  return { size, sha256: hash.digest('hex'), audio };
}

/** Disk trouble (full, read-only) is ours, not the upstream's: storageFault names it for the operator. */
async function runFileOperation<T>(operation: string, run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (error) {
    throw temporaryFileError(operation, error);
  }
}

function temporaryFileError(operation: string, error: unknown): AppError {
  return storageFault(`${operation} the temporary recording file`, error);
}

/** Container and codec are "nice to know": a parse failure must not fail the download. */
async function readAudioMetadata(
  path: string,
): Promise<Pick<DownloadedRecording, 'container' | 'codec' | 'durationSeconds'>> {
  try {
    const { format } = await parseFile(path, { duration: false, skipCovers: true });
    const duration = format.duration;
    return {
      container: format.container ?? null,
      codec: format.codec ?? null,
      durationSeconds: duration !== undefined && Number.isFinite(duration) ? duration : null,
    };
  } catch {
    return { container: null, codec: null, durationSeconds: null };
  }
}

/** Said of a body that broke off after it had begun: how much of it came. */
function describeShortfall(size: number, contentLength: number | undefined): string {
  return contentLength !== undefined ? `received ${size} of ${contentLength} bytes` : `received ${size} bytes, then the connection ended before the body did`;
}

function toNetworkError(error: unknown, shortfall?: string): AppError {
  if (error instanceof AppError) return error;
  const cause = coerceError(error);
  const code = (cause as { code?: unknown }).code;
  if (typeof code === 'string' && TIMEOUT_ERROR_CODES.has(code)) {
    return new AppError(`Recording download timed out: ${cause.message}`, {
      code: 'TIMEOUT',
      statusCode: 504,
      retryable: true,
      cause,
    });
  }
  if (shortfall !== undefined) return truncated(`${shortfall} (${cause.message})`, cause);
  return new AppError(`Recording download failed: ${cause.message}`, {
    code: 'NETWORK',
    statusCode: 502,
    retryable: true,
    cause,
  });
}

function abortedError(cause: unknown): AppError {
  return new AppError('Recording download aborted', { code: 'ABORTED', statusCode: 503, retryable: true, cause });
}

function tooLarge(why: string): AppError {
  return new AppError(`Recording too large: ${why}`, { code: 'TOO_LARGE', statusCode: 502, retryable: false });
}

function truncated(why: string, cause?: Error): AppError {
  return new AppError(`Recording body truncated: ${why}`, { code: 'TRUNCATED', statusCode: 502, retryable: true, cause });
}

function tooManyRedirects(why: string): AppError {
  return new AppError(`Too many redirects: ${why}`, { code: 'TOO_MANY_REDIRECTS', statusCode: 502, retryable: false });
}

/**
 * undici reports destroying an unread body as an 'error' event; nobody wants that body, so the
 * error is dropped instead of crashing the process as unhandled.
 */
function discardBody(body: Dispatcher.ResponseData['body']): void {
  body.on('error', () => {});
  body.destroy();
}

function readContentLength(value: string | string[] | undefined): number | undefined {
  const text = firstHeader(value);
  if (text === undefined || !/^\d+$/.test(text.trim())) return undefined;
  const length = Number(text.trim());
  return Number.isSafeInteger(length) ? length : undefined;
}

function firstHeader(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}
