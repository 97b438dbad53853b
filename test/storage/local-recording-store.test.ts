import { randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { text } from 'node:stream/consumers';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createLocalRecordingStore } from '../../src/storage/local-recording-store.ts';
import type { RecordingStore } from '../../src/storage/recording-store.ts';
import { LEGACY_IDLE_MS, OWNER_STALE_MS } from '../../src/storage/temp-directory.ts';

let dataDir: string;
let dir: string;
let store: RecordingStore;

beforeEach(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'store-test-'));
  dir = join(dataDir, 'recordings');
  store = await createLocalRecordingStore(dir);
});

afterEach(async () => {
  await store.close();
  await rm(dataDir, { recursive: true, force: true });
});

async function writeTemp(name: string, content: string): Promise<string> {
  const path = join(store.tmpDir, name);
  await writeFile(path, content);
  return path;
}

describe('local recording store', () => {
  it('creates the directory, and inside it a temp directory holding this store\'s own locked area', async () => {
    expect(await readdir(dir)).toEqual(['.tmp']);
    const area = basename(store.tmpDir);
    expect(store.tmpDir).toBe(join(dir, '.tmp', area));
    expect((await readdir(join(dir, '.tmp'))).sort()).toEqual([area, `${area}.lock`]);
  });

  it('moves a temp file in with put, and reports its size', async () => {
    const tempPath = await writeTemp('a.part', 'hello recording');

    await store.put(tempPath, 'call-1.ogg');

    expect(await store.stat('call-1.ogg')).toEqual({ size: 15 });
    expect(await readFile(join(dir, 'call-1.ogg'), 'utf8')).toBe('hello recording');
    expect(await readdir(store.tmpDir)).toEqual([]);
  });

  it('replaces an earlier file under the same key', async () => {
    await store.put(await writeTemp('a.part', 'first'), 'call-1.ogg');
    await store.put(await writeTemp('b.part', 'second!'), 'call-1.ogg');
    expect(await text((await store.openRead('call-1.ogg'))!)).toBe('second!');
  });

  it('returns null from stat for a missing key', async () => {
    expect(await store.stat('missing.ogg')).toBeNull();
  });

  it('reads the whole file or an inclusive byte range', async () => {
    await store.put(await writeTemp('a.part', '0123456789'), 'call-1.ogg');
    expect(await text((await store.openRead('call-1.ogg'))!)).toBe('0123456789');
    expect(await text((await store.openRead('call-1.ogg', { start: 2, end: 5 }))!)).toBe('2345');
    expect(await text((await store.openRead('call-1.ogg', { start: 9, end: 9 }))!)).toBe('9');
  });

  it('opens nothing for a missing key, as stat', async () => {
    expect(await store.openRead('missing.ogg')).toBeNull();
  });

  it('removes a file, and removing it again is fine', async () => {
    await store.put(await writeTemp('a.part', 'x'), 'call-1.ogg');
    await store.remove('call-1.ogg');
    await store.remove('call-1.ogg');
    expect(await store.stat('call-1.ogg')).toBeNull();
  });

  it('refuses keys that would leave the directory', async () => {
    await writeFile(join(dataDir, 'secret.txt'), 'secret');
    await expect(store.stat('../secret.txt')).rejects.toMatchObject({ code: 'INVALID_KEY' });
    await expect(store.remove('../secret.txt')).rejects.toMatchObject({ code: 'INVALID_KEY' });
    await expect(store.openRead('../secret.txt')).rejects.toMatchObject({ code: 'INVALID_KEY' });
    await expect(store.put(await writeTemp('a.part', 'x'), '../evil.ogg')).rejects.toMatchObject({ code: 'INVALID_KEY' });
    expect(await readFile(join(dataDir, 'secret.txt'), 'utf8')).toBe('secret');
  });

  it('cleans the leftovers of dead processes only, and counts them', async () => {
    const tempRoot = join(dir, '.tmp');
    const longAgo = (ms: number) => new Date(Date.now() - ms - 1_000);
    // A process killed mid-download: its lock has not been refreshed since.
    await leaveArea(tempRoot, { parts: 2, lockedAt: longAgo(OWNER_STALE_MS) });
    // One that released its lock at a stop but could not delete its area (read-only disk).
    await leaveArea(tempRoot, { parts: 1, lockedAt: null });
    // One killed between taking its lock and making its area.
    const lockOnly = randomUUID();
    await mkdir(join(tempRoot, `${lockOnly}.lock`));
    await utimes(join(tempRoot, `${lockOnly}.lock`), longAgo(OWNER_STALE_MS), longAgo(OWNER_STALE_MS));
    // An earlier release's download, given up long ago; and one of its downloads still being written.
    await writeFile(join(tempRoot, 'old-release.part'), 'partial');
    await utimes(join(tempRoot, 'old-release.part'), longAgo(LEGACY_IDLE_MS), longAgo(LEGACY_IDLE_MS));
    await writeFile(join(tempRoot, 'old-release-writing.part'), 'partial');
    await writeFile(join(tempRoot, 'not-ours.txt'), 'keep');
    // A process that has just been killed looks alive until its lock goes stale.
    const justKilled = await leaveArea(tempRoot, { parts: 1, lockedAt: new Date() });
    // Another live process on the same directory, mid-download.
    const other = await createLocalRecordingStore(dir);
    await writeFile(join(other.tmpDir, 'downloading.part'), 'partial');
    await store.put(await writeTemp('done.part', 'done'), 'call-1.ogg');

    expect(await store.cleanTemp()).toBe(4);
    const own = basename(store.tmpDir);
    const others = basename(other.tmpDir);
    expect((await readdir(tempRoot)).sort()).toEqual(
      [own, `${own}.lock`, others, `${others}.lock`, justKilled, `${justKilled}.lock`, 'old-release-writing.part', 'not-ours.txt'].sort(),
    );
    expect(await readdir(other.tmpDir)).toEqual(['downloading.part']);
    expect(await store.stat('call-1.ogg')).toEqual({ size: 4 });
    expect(await other.cleanTemp()).toBe(0);
    await other.close();
  });

  it('gives up its area and lock at close, and another store then has nothing to clean', async () => {
    const other = await createLocalRecordingStore(dir);
    await writeFile(join(other.tmpDir, 'aborted.part'), 'partial');
    await other.close();
    const own = basename(store.tmpDir);
    expect((await readdir(join(dir, '.tmp'))).sort()).toEqual([own, `${own}.lock`]);
    expect(await store.cleanTemp()).toBe(0);
  });

  it('passes check on a writable directory and leaves nothing behind', async () => {
    await store.check();
    expect(await readdir(store.tmpDir)).toEqual([]);
  });

  // A file where the temp directory should be fails every write, even for root (chmod would not).
  it('fails check when the temp directory cannot be written', async () => {
    await rm(store.tmpDir, { recursive: true });
    await writeFile(store.tmpDir, 'not a directory');
    await expect(store.check()).rejects.toMatchObject({ code: 'STORAGE', retryable: true });
  });
});

/** What a process leaves in the temp directory: its area with `parts` partial downloads, and its lock as last refreshed at `lockedAt` (null: released). */
async function leaveArea(tempRoot: string, { parts, lockedAt }: { parts: number; lockedAt: Date | null }): Promise<string> {
  const area = randomUUID();
  await mkdir(join(tempRoot, area));
  for (let index = 0; index < parts; index += 1) await writeFile(join(tempRoot, area, `${randomUUID()}.part`), 'partial');
  if (lockedAt !== null) {
    await mkdir(join(tempRoot, `${area}.lock`));
    await utimes(join(tempRoot, `${area}.lock`), lockedAt, lockedAt);
  }
  return area;
}
