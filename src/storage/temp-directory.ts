import { randomUUID } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { assertRoom, DATABASE_HEADROOM_BYTES, measureFreeSpace, removeTempFile, runStorageOperation } from './storage-faults.ts';

const TEMP_SUFFIX = '.part';

/**
 * The local directory downloads are written to before a store takes them (every store: S3
 * uploads from local disk too). Temp files that could not be deleted (the disk was read-only)
 * are tried again whenever the disk has just taken a write, so they do not wait for a restart.
 * `name` is how failures name the directory to the operator.
 */
export function createTempDirectory(
  path: string,
  { headroomBytes = DATABASE_HEADROOM_BYTES, name = 'the temporary recordings directory' }: { headroomBytes?: number; name?: string } = {},
) {
  mkdirSync(path, { recursive: true });
  let stranded = new Set<string>();

  /** Deletes a temp file that will not be stored; never throws. */
  async function discard(tempPath: string): Promise<void> {
    if (await removeTempFile(tempPath)) stranded.delete(tempPath);
    else stranded.add(tempPath);
  }

  async function retryStranded(): Promise<void> {
    if (stranded.size === 0) return;
    const paths = [...stranded];
    stranded = new Set();
    await Promise.all(paths.map(discard));
  }

  return {
    path,
    discard,
    retryStranded,

    /**
     * Deletes temp files left by a process killed mid-download; returns how many. One that
     * cannot go now (read-only disk) must not stop the start: the service still takes
     * webhooks, and the file goes once the disk takes writes again.
     */
    async cleanLeftovers(): Promise<number> {
      const names = await runStorageOperation('list the temp directory', () => readdir(path));
      const leftovers = names.map((name) => join(path, name)).filter((file) => file.endsWith(TEMP_SUFFIX));
      await Promise.all(leftovers.map(discard));
      return leftovers.filter((file) => !stranded.has(file)).length;
    },

    /** Throws unless a download could be written here now (for the readiness probe). */
    async checkWritable(): Promise<void> {
      // Writing is the only honest test: access(W_OK) misses a full disk and some read-only mounts.
      const probe = join(path, `check-${randomUUID()}${TEMP_SUFFIX}`);
      try {
        await runStorageOperation(`write to ${name}`, () => writeFile(probe, 'ok', { flag: 'wx' }));
      } finally {
        // A full disk creates the file and then fails the write: never leave one per probe.
        await removeTempFile(probe);
      }
      await retryStranded();
      // Writable but inside the database's headroom: every download would be refused.
      assertRoom(await measureFreeSpace(path), { needed: 0, written: 0, headroom: headroomBytes });
    },
  };
}
