import { randomUUID } from 'node:crypto';
import { mkdir, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import lockfile from 'proper-lockfile';
import { assertRoom, DATABASE_HEADROOM_BYTES, measureFreeSpace, removeTempFile, runStorageOperation } from './storage-faults.ts';

const TEMP_SUFFIX = '.part';
const LOCK_SUFFIX = '.lock';
const AREA_NAME = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * A temp area whose lock has not been refreshed for this long belongs to a process that has
 * died: proper-lockfile's default, the owner refreshing it every half of that. Until then a
 * dead process's area looks owned, so its leftovers go at a later sweep, not at the next start.
 */
export const OWNER_STALE_MS = 10_000;

/**
 * A `.part` file directly in the temp directory was written by a release before temp areas,
 * and says nothing of its owner: it is left alone until no byte has reached it for this long.
 * A download of such a release gives up after 30 s without a byte (its body timeout), so one
 * that is still running is never taken for a leftover.
 */
export const LEGACY_IDLE_MS = 60_000;

/**
 * The local directory downloads are written to before a store takes them (every store: S3
 * uploads from local disk too). Several processes may share it: a rolling restart starts the
 * new one while the old one finishes its downloads, or a second one is started by mistake on
 * the same DATA_DIR. So each process writes only in an area of its own, `<root>/<id>/`, which it
 * holds with a proper-lockfile lock (`<root>/<id>.lock`, a directory whose mtime it refreshes):
 * it works on a shared volume between containers, where process ids say nothing. `path` is
 * this process's area; clean-up removes only the areas no live process holds. Temp files that
 * could not be deleted (the disk was read-only) are tried again whenever the disk has just
 * taken a write, so they do not wait for a restart. `name` is how failures name the directory
 * to the operator.
 */
export async function openTempDirectory(
  root: string,
  { headroomBytes = DATABASE_HEADROOM_BYTES, name = 'the temporary recordings directory' }: { headroomBytes?: number; name?: string } = {},
) {
  const area = join(root, randomUUID());
  let stranded = new Set<string>();
  let releaseLock: (() => Promise<void>) | undefined;
  /** Counts the locks taken: a lock given up must not report itself lost afterwards. */
  let generation = 0;
  /** Why this process does not hold its area now: not yet taken, or lost (see keepOwnership). */
  let lost: Error | null = new Error('not taken yet');
  let taking: Promise<void> | undefined;

  async function takeOwnership(): Promise<void> {
    // Whatever lock was held is given up first: it stops refreshing, and no longer reports a loss.
    await releaseLock?.().catch(() => {});
    releaseLock = undefined;
    const mine = ++generation;
    const onCompromised = (error: Error) => {
      if (mine === generation) lost = error;
    };
    await runStorageOperation(`create ${name}`, () => mkdir(root, { recursive: true }));
    // The lock before the area: an area seen without its lock is a dead process's.
    releaseLock = await runStorageOperation(`lock a temporary area in ${name}`, () =>
      lockfile.lock(area, { realpath: false, stale: OWNER_STALE_MS, onCompromised }),
    );
    await runStorageOperation(`create a temporary area in ${name}`, () => mkdir(area, { recursive: true }));
    lost = null;
  }

  /**
   * Takes the area (again) when this process does not hold it: the disk refused at start
   * (read-only), the lock's refresh failed for too long, or the area was deleted under it.
   * Throws while that cannot be done.
   */
  async function keepOwnership(): Promise<void> {
    if (lost === null && (await stat(area).then((stats) => stats.isDirectory(), () => false))) return;
    // Downloads starting together take it once.
    taking ??= takeOwnership().finally(() => (taking = undefined));
    await taking;
  }

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

  /**
   * Removes another process's area if no live process holds it, and returns how many partial
   * downloads it held. Taking its lock first (proper-lockfile takes over a stale one) keeps two
   * processes sweeping at once from both working on it. Never throws: an area that cannot go
   * now (read-only disk) is tried again at the next sweep.
   */
  async function removeIfAbandoned(otherArea: string): Promise<number> {
    let release: () => Promise<void>;
    try {
      release = await lockfile.lock(otherArea, { realpath: false, stale: OWNER_STALE_MS, onCompromised: () => {} });
    } catch {
      // ELOCKED: its owner is alive. Anything else: the disk refuses writes; next sweep.
      return 0;
    }
    try {
      const names = await readdir(otherArea).catch(() => [] as string[]);
      await rm(otherArea, { recursive: true, force: true });
      return names.filter((file) => file.endsWith(TEMP_SUFFIX)).length;
    } catch {
      return 0;
    } finally {
      await release().catch(() => {});
    }
  }

  /** A top-level `.part` of an earlier release, once idle for LEGACY_IDLE_MS; see there. */
  async function isIdleLegacyFile(file: string): Promise<boolean> {
    const stats = await stat(file).catch(() => null);
    return stats !== null && stats.isFile() && stats.mtimeMs < Date.now() - LEGACY_IDLE_MS;
  }

  // A bad DATA_DIR fails the start; a disk that takes no writes now (read-only) does not: the
  // service still takes webhooks, and the area is taken once it can be (keepOwnership).
  await runStorageOperation(`create ${name}`, () => mkdir(root, { recursive: true }));
  await takeOwnership().catch(() => {});

  return {
    path: area,
    /** Free space a write here must leave on the disk (the database's headroom). */
    headroomBytes,
    keepOwnership,
    discard,
    retryStranded,

    /**
     * Deletes the temp files no live process owns: the areas of processes that died (killed
     * mid-download) and idle files of an earlier release; returns how many partial downloads
     * went. Never touches the area of a live process, whose downloads are still being written.
     * One that cannot go now (read-only disk) must not stop the start: the service still takes
     * webhooks, and the file goes once the disk takes writes again.
     */
    async cleanLeftovers(): Promise<number> {
      // Not holding its own area does not stop it sweeping the others; `checkWritable` reports it.
      await keepOwnership().catch(() => {});
      const entries = await runStorageOperation('list the temp directory', () => readdir(root));
      const otherAreas = new Set<string>();
      const legacy: string[] = [];
      for (const entry of entries) {
        const areaName = entry.endsWith(LOCK_SUFFIX) ? entry.slice(0, -LOCK_SUFFIX.length) : entry;
        if (AREA_NAME.test(areaName)) {
          if (join(root, areaName) !== area) otherAreas.add(join(root, areaName));
        } else if (entry.endsWith(TEMP_SUFFIX) && (await isIdleLegacyFile(join(root, entry)))) {
          legacy.push(join(root, entry));
        }
      }
      const removedFromAreas = await Promise.all([...otherAreas].map(removeIfAbandoned));
      await Promise.all(legacy.map(discard));
      return removedFromAreas.reduce((sum, count) => sum + count, 0) + legacy.filter((file) => !stranded.has(file)).length;
    },

    /** Throws unless a download could be written here now (for the readiness probe). */
    async checkWritable(): Promise<void> {
      await keepOwnership();
      // Writing is the only honest test: access(W_OK) misses a full disk and some read-only mounts.
      const probe = join(area, `check-${randomUUID()}${TEMP_SUFFIX}`);
      try {
        await runStorageOperation(`write to ${name}`, () => writeFile(probe, 'ok', { flag: 'wx' }));
      } finally {
        // A full disk creates the file and then fails the write: never leave one per probe.
        await removeTempFile(probe);
      }
      await retryStranded();
      // Writable but inside the database's headroom: every download would be refused.
      assertRoom(await measureFreeSpace(area), { needed: 0, written: 0, headroom: headroomBytes });
    },

    /**
     * Gives up this process's area, with whatever is left in it (nothing is being written once
     * the downloads have stopped); never throws. What cannot be deleted now goes at another
     * process's sweep, the lock being released or, failing that, going stale.
     */
    async close(): Promise<void> {
      await rm(area, { recursive: true, force: true }).catch(() => {});
      await releaseLock?.().catch(() => {});
    },
  };
}
