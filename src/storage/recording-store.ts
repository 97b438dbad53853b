import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { AppError } from '../errors.ts';

/** Where finished recordings live: a local directory, or an S3 bucket (`RECORDINGS_STORAGE`). */
export interface RecordingStore {
  /**
   * Moves a downloaded temp file (from `tmpDir`) in under `key`; the same key holds the same
   * bytes. Resolves only once the recording is complete and durable under `key`; when it
   * rejects, `key` holds no part of this file (it holds what it held before, or nothing).
   * `signal` (shutdown) interrupts a put that takes time (an upload), which then rejects.
   */
  put(tempPath: string, key: string, signal?: AbortSignal): Promise<void>;
  stat(key: string): Promise<{ size: number } | null>;
  /**
   * Opens `key` for reading; null when nothing is stored under it (as `stat`). `range` is
   * inclusive at both ends, as in an HTTP Range header, and must lie within the recording.
   */
  openRead(key: string, range?: { start: number; end: number }): Promise<Readable | null>;
  /**
   * Where `key` lies on this machine's disk, for a reader that wants a file path (an upload
   * streamed from disk); only a local store has one. The file may be gone by the time it is read.
   */
  localPath?(key: string): string;
  /** Succeeds when nothing is stored under `key`. */
  remove(key: string): Promise<void>;
  /**
   * Deletes a temp file from `tmpDir` that will not be `put`; never throws. One that cannot be
   * deleted now (read-only storage) is deleted once the storage takes writes again.
   */
  discardTemp(tempPath: string): Promise<void>;
  /**
   * Deletes the temp files that no live process owns (left by a process killed mid-download);
   * returns how many partial downloads went. Never touches those of another live process on
   * the same directory (a rolling restart): a dead process's files may look owned for a few
   * seconds after it died, and go at a later call. Run at start and then now and again. Never
   * fails over one it cannot delete (that one waits, as with `discardTemp`).
   */
  cleanTemp(): Promise<number>;
  /**
   * This process's own temp area; downloads write here, once `prepareTemp` has resolved. On the
   * store's own filesystem (a rename), or local disk (S3).
   */
  readonly tmpDir: string;
  /**
   * Free space a download into `tmpDir` must leave on its disk: the database's headroom
   * (DATABASE_HEADROOM_BYTES), which `check()` also holds the store to.
   */
  readonly tmpHeadroomBytes: number;
  /**
   * Makes sure `tmpDir` exists and is held by this process: taken again after a start on a
   * read-only disk, a lost lock, or the area deleted under it. Throws a storage error (with
   * the disk's reason) while it cannot be.
   */
  prepareTemp(): Promise<void>;
  /** Throws when the store cannot take a new recording (for the readiness probe). */
  check(): Promise<void>;
  /**
   * Gives up `tmpDir`, deleting what is left in it, and releases connections (the S3 client's
   * sockets); the store is not used afterwards. Called once no download runs any more.
   */
  close(): Promise<void>;
}

const KEY_PATTERN = /^[A-Za-z0-9_-]+\.[a-z0-9]{1,10}$/;
const EXTENSION_PATTERN = /^[a-z0-9]{1,10}$/;
const SHA256_PATTERN = /^[0-9a-f]{64}$/;
const READABLE_PREFIX_LENGTH = 64;

/**
 * A file name for a call's recording whatever the call id holds (it comes from a webhook): a
 * readable prefix for operators, plus a hash of the full id so distinct ids never share a file,
 * plus the start of the content's sha256, so that a second download of different bytes can
 * never overwrite the file a call already has attached.
 */
export function recordingKeyFor(callId: string, contentSha256: string, extension: string): string {
  const normalisedExtension = extension.toLowerCase();
  if (!EXTENSION_PATTERN.test(normalisedExtension)) {
    throw new AppError(`Invalid recording file extension "${extension}"`, { code: 'INVALID_KEY', statusCode: 400 });
  }
  if (!SHA256_PATTERN.test(contentSha256)) {
    throw new AppError('Invalid recording sha256', { code: 'INVALID_KEY', statusCode: 400 });
  }
  const digest = createHash('sha256').update(callId, 'utf8').digest('hex').slice(0, 16);
  // A leading '-' would read as an option to shell tools an operator points at the directory.
  const prefix = callId
    .replace(/[^A-Za-z0-9_-]+/g, '_')
    .replace(/^[-_]+/, '')
    .slice(0, READABLE_PREFIX_LENGTH);
  return `${prefix === '' ? '' : `${prefix}-`}${digest}-${contentSha256.slice(0, 16)}.${normalisedExtension}`;
}

/** Keys may come back from the database or a URL: refuse anything that could leave the directory. */
export function assertRecordingKey(key: string): void {
  if (!KEY_PATTERN.test(key)) {
    throw new AppError(`Invalid recording key "${key}"`, { code: 'INVALID_KEY', statusCode: 400 });
  }
}
