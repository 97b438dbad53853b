import { createReadStream, mkdirSync } from 'node:fs';
import { open, readdir, rename, rm, stat as statFile, writeFile } from 'node:fs/promises';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { AppError, coerceError } from '../errors.ts';
import { assertRecordingKey } from './recording-store.ts';
import type { RecordingStore } from './recording-store.ts';

const TEMP_SUFFIX = '.part';

/**
 * Recordings as plain files in `dir` (DATA_DIR/recordings). Temp files live in `dir/.tmp`, on the
 * same filesystem, so moving a finished download in is an atomic rename: a reader sees the old
 * file or the new one, never half of one. Creates both directories at once so start-up fails fast
 * on a bad DATA_DIR.
 */
export function createLocalRecordingStore(dir: string): RecordingStore {
  const tmpDir = join(dir, '.tmp');
  mkdirSync(tmpDir, { recursive: true });
  const pathOf = (key: string): string => {
    assertRecordingKey(key);
    return join(dir, key);
  };

  return {
    tmpDir,

    async put(tempPath, key) {
      const target = pathOf(key);
      await runStorageOperation(`move a recording to ${key}`, async () => {
        await rename(tempPath, target);
        // The rename lives in the directory entry: without this a power cut can lose the file.
        await syncDirectory(dir);
      });
    },

    async stat(key) {
      const path = pathOf(key);
      try {
        const stats = await statFile(path);
        return { size: stats.size };
      } catch (error) {
        if (isMissingFile(error)) return null;
        throw storageError(`stat ${key}`, error);
      }
    },

    createReadStream(key, range) {
      return createReadStream(pathOf(key), range ? { start: range.start, end: range.end } : {});
    },

    async remove(key) {
      const path = pathOf(key);
      await runStorageOperation(`remove ${key}`, () => rm(path, { force: true }));
    },

    async cleanTemp() {
      const names = await runStorageOperation('list the temp directory', () => readdir(tmpDir));
      const leftovers = names.filter((name) => name.endsWith(TEMP_SUFFIX));
      await Promise.all(leftovers.map((name) => rm(join(tmpDir, name), { force: true })));
      return leftovers.length;
    },

    async check() {
      // Writing is the only honest test: access(W_OK) misses a full disk and some read-only mounts.
      const probe = join(tmpDir, `check-${randomUUID()}${TEMP_SUFFIX}`);
      await runStorageOperation('write to the recordings directory', async () => {
        await writeFile(probe, 'ok', { flag: 'wx' });
        await rm(probe, { force: true });
      });
    },
  };
}

async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

function isMissingFile(error: unknown): boolean {
  return (error as { code?: unknown } | null)?.code === 'ENOENT';
}

async function runStorageOperation<T>(what: string, run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (error) {
    throw storageError(what, error);
  }
}

function storageError(what: string, cause: unknown): AppError {
  return new AppError(`Could not ${what}: ${coerceError(cause).message}`, {
    code: 'STORAGE',
    statusCode: 500,
    retryable: true,
    cause,
  });
}
