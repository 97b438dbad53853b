import { rm, statfs } from 'node:fs/promises';
import { AppError, coerceError, type ErrorCode } from '../errors.ts';

/**
 * The one place that turns a filesystem error from storing a recording (the temp file of a
 * download, the store's own rename, remove or probe) into an AppError that says in plain words
 * what is wrong with the disk. Every storage fault is retryable: a disk that is full or
 * read-only now can be freed or remounted, and the job tries again on its schedule; a fault the
 * operator must fix is told apart from the upstream's own trouble by its code.
 */
interface StorageFaultKind {
  code: ErrorCode;
  /** What the operator reads first, before "could not <operation>". */
  summary: string;
}

const STORAGE_FAULTS: Record<string, StorageFaultKind> = {
  ENOSPC: { code: 'STORAGE_FULL', summary: 'Recording storage is full (no space left on device)' },
  EDQUOT: { code: 'STORAGE_FULL', summary: 'Recording storage is full (disk quota exceeded)' },
  EROFS: { code: 'STORAGE_READ_ONLY', summary: 'Recording storage is read-only (read-only file system)' },
  EACCES: { code: 'STORAGE_NOT_WRITABLE', summary: 'Recording storage is not writable (permission denied)' },
  EPERM: { code: 'STORAGE_NOT_WRITABLE', summary: 'Recording storage is not writable (operation not permitted)' },
  EIO: { code: 'STORAGE_IO', summary: 'Recording storage failed (input/output error)' },
};

/**
 * `operation` completes "could not …", e.g. "write the temporary recording file". An AppError
 * passes through unchanged, so wrapping twice keeps the first, most precise reason.
 */
export function storageFault(operation: string, cause: unknown): AppError {
  if (cause instanceof AppError) return cause;
  const error = coerceError(cause);
  const errno = (error as { code?: unknown }).code;
  const kind = typeof errno === 'string' ? STORAGE_FAULTS[errno] : undefined;
  const message = kind ? `${kind.summary}: could not ${operation}` : `Could not ${operation}: ${error.message}`;
  return new AppError(message, { code: kind?.code ?? 'STORAGE', statusCode: 500, retryable: true, cause: error });
}

/** Runs one storage operation, reporting its failure through `storageFault`. */
export async function runStorageOperation<T>(operation: string, run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (error) {
    throw storageFault(operation, error);
  }
}

/**
 * Deletes a temp file after a failed or finished attempt, and never throws: the attempt's own
 * error is the one worth reporting, not a failed clean-up. Returns false when the file could
 * not be removed (say the storage turned read-only): the store's `discardTemp` keeps such a
 * file and deletes it once the storage takes writes again.
 */
export async function removeTempFile(path: string): Promise<boolean> {
  try {
    await rm(path, { force: true });
    return true;
  } catch {
    return false;
  }
}

/**
 * The last stretch of the disk is the database's. A download that took it would leave SQLite
 * unable to grow its log, and webhooks could no longer be stored: the service must keep taking
 * them while recordings wait for space. The write-ahead log alone grows to about 4 MiB between
 * checkpoints; the rest is room for the events that keep coming while the operator frees space.
 */
export const DATABASE_HEADROOM_BYTES = 64 * 1024 ** 2;

interface RoomCheck {
  /** Bytes of the recording still to be written; 0 when its length is not known. */
  needed: number;
  /** Bytes of it already written to the temp file, for the message. */
  written: number;
  headroom: number;
}

/**
 * Bytes an unprivileged writer may still use on `dir`'s filesystem; Infinity for one that
 * reports no size at all (some FUSE and network filesystems), which would otherwise look full.
 */
export async function measureFreeSpace(dir: string): Promise<number> {
  const stats = await runStorageOperation('read the free space of the recording storage', () => statfs(dir));
  return stats.blocks === 0 ? Number.POSITIVE_INFINITY : stats.bavail * stats.bsize;
}

/**
 * Throws STORAGE_FULL (retryable) when writing `needed` more bytes would leave less than
 * `headroom` of the `free` bytes. Synchronous on a measurement taken earlier, so a download
 * can judge its Content-Length the moment the headers come, without waiting for the disk
 * while the body arrives.
 */
export function assertRoom(free: number, { needed, written, headroom }: RoomCheck): void {
  if (free - needed >= headroom) return;
  const kept = `${formatBytes(headroom)} is kept free for the database`;
  const detail =
    written === 0 && needed > 0
      ? `the recording needs ${formatBytes(needed)}, ${formatBytes(free)} is free and ${kept}`
      : written === 0
        ? `${formatBytes(free)} is free and ${kept}`
        : `${formatBytes(free)} is left after ${formatBytes(written)} of the recording${needed > 0 ? `, ${formatBytes(needed)} more is needed` : ''}, and ${kept}`;
  throw new AppError(`Recording storage is full: ${detail}`, { code: 'STORAGE_FULL', statusCode: 500, retryable: true });
}

/** `assertRoom` on the free space measured now: what a download checks as its file grows. */
export async function assertRoomForRecording(dir: string, check: RoomCheck): Promise<void> {
  assertRoom(await measureFreeSpace(dir), check);
}

/** `512 B`, `12.3 KiB`, `64 MiB`, `1.5 GiB`: one decimal at most, for a person reading a reason. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = Math.max(0, bytes);
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${unit === 0 ? value : Number(value.toFixed(1))} ${units[unit]}`;
}
