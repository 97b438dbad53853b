import { open, rename, rm, stat as statFile } from 'node:fs/promises';
import { join } from 'node:path';
import { assertRecordingKey } from './recording-store.ts';
import type { RecordingStore } from './recording-store.ts';
import { DATABASE_HEADROOM_BYTES, runStorageOperation, storageFault } from './storage-faults.ts';
import { openTempDirectory } from './temp-directory.ts';

/**
 * Recordings as plain files in `dir` (DATA_DIR/recordings). Temp files live under `dir/.tmp` (in
 * this process's own area there), on the same filesystem, so moving a finished download in is an
 * atomic rename: a reader sees the old file or the new one, never half of one. Creates both
 * directories at once so start-up fails fast on a bad DATA_DIR. `headroomBytes`: free space below
 * which `check()` reports the store full, as downloads would find it.
 */
export async function createLocalRecordingStore(dir: string, { headroomBytes = DATABASE_HEADROOM_BYTES } = {}): Promise<RecordingStore> {
  const temp = await openTempDirectory(join(dir, '.tmp'), { headroomBytes, name: 'the recordings directory' });
  const pathOf = (key: string): string => {
    assertRecordingKey(key);
    return join(dir, key);
  };

  return {
    tmpDir: temp.path,
    tmpHeadroomBytes: temp.headroomBytes,

    async put(tempPath, key) {
      const target = pathOf(key);
      await runStorageOperation(`move a recording to ${key}`, async () => {
        await rename(tempPath, target);
        // The rename lives in the directory entry: without this a power cut can lose the file.
        await syncDirectory(dir);
      });
      await temp.retryStranded();
    },

    discardTemp: temp.discard,
    prepareTemp: temp.keepOwnership,

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

    async openRead(key, range) {
      const path = pathOf(key);
      // Opened before anything is sent, so that a file deleted since `stat` (retention) is a
      // 404 like any missing recording, not an error in the middle of a response.
      let handle;
      try {
        handle = await open(path, 'r');
      } catch (error) {
        if (isMissingFile(error)) return null;
        throw storageFault(`read ${key}`, error);
      }
      return handle.createReadStream(range ? { start: range.start, end: range.end } : {});
    },

    localPath: pathOf,

    async remove(key) {
      const path = pathOf(key);
      await runStorageOperation(`remove ${key}`, () => rm(path, { force: true }));
    },

    cleanTemp: temp.cleanLeftovers,
    check: temp.checkWritable,
    close: temp.close,
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
