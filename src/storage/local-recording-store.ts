import { createReadStream, mkdirSync } from 'node:fs';
import { open, readdir, rename, rm, stat as statFile, writeFile } from 'node:fs/promises';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { assertRecordingKey } from './recording-store.ts';
import type { RecordingStore } from './recording-store.ts';
import { removeTempFile, runStorageOperation, storageFault } from './storage-faults.ts';

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
  // Temp files that could not be deleted (the storage was read-only): tried again whenever the
  // storage has just taken a write, so they do not wait for the next start.
  let stranded = new Set<string>();
  const discard = async (tempPath: string): Promise<void> => {
    if (await removeTempFile(tempPath)) stranded.delete(tempPath);
    else stranded.add(tempPath);
  };
  const retryStranded = async (): Promise<void> => {
    if (stranded.size === 0) return;
    const paths = [...stranded];
    stranded = new Set();
    await Promise.all(paths.map(discard));
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
      await retryStranded();
    },

    discardTemp: discard,

    async stat(key) {
      const path = pathOf(key);
      try {
        const stats = await statFile(path);
        return { size: stats.size };
      } catch (error) {
        if (isMissingFile(error)) return null;
        throw storageFault(`stat ${key}`, error);
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
      const leftovers = names.map((name) => join(tmpDir, name)).filter((path) => path.endsWith(TEMP_SUFFIX));
      // One that cannot go now (read-only storage) must not stop the start: the service still
      // takes webhooks, and the file goes once the storage takes writes again.
      await Promise.all(leftovers.map(discard));
      return leftovers.filter((path) => !stranded.has(path)).length;
    },

    async check() {
      // Writing is the only honest test: access(W_OK) misses a full disk and some read-only mounts.
      const probe = join(tmpDir, `check-${randomUUID()}${TEMP_SUFFIX}`);
      try {
        await runStorageOperation('write to the recordings directory', () => writeFile(probe, 'ok', { flag: 'wx' }));
      } finally {
        // A full disk creates the file and then fails the write: never leave one per probe.
        await removeTempFile(probe);
      }
      await retryStranded();
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
