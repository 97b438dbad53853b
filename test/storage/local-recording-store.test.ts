import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { text } from 'node:stream/consumers';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createLocalRecordingStore } from '../../src/storage/local-recording-store.ts';
import type { RecordingStore } from '../../src/storage/recording-store.ts';

let dataDir: string;
let dir: string;
let store: RecordingStore;

beforeEach(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'store-test-'));
  dir = join(dataDir, 'recordings');
  store = createLocalRecordingStore(dir);
});

afterEach(async () => {
  await rm(dataDir, { recursive: true, force: true });
});

async function writeTemp(name: string, content: string): Promise<string> {
  const path = join(store.tmpDir, name);
  await writeFile(path, content);
  return path;
}

describe('local recording store', () => {
  it('creates the directory and its temp directory inside it', async () => {
    expect(store.tmpDir).toBe(join(dir, '.tmp'));
    expect(await readdir(dir)).toEqual(['.tmp']);
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

  it('cleans leftover .part files only, and counts them', async () => {
    await writeTemp('killed-mid-download.part', 'partial');
    await writeTemp('another.part', 'partial');
    await writeTemp('not-ours.txt', 'keep');
    await store.put(await writeTemp('done.part', 'done'), 'call-1.ogg');

    expect(await store.cleanTemp()).toBe(2);
    expect(await readdir(store.tmpDir)).toEqual(['not-ours.txt']);
    expect(await store.stat('call-1.ogg')).toEqual({ size: 4 });
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
