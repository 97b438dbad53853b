/**
 * Storage faults below the service: the mapping of filesystem errors to reasons an operator can
 * act on, the room a download leaves the database, and what the downloader and the local store
 * do on a disk that is really full or really read-only (a tmpfs, when the tests run as root).
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { downloadRecording, type DownloadedRecording } from '../../src/download/download-recording.ts';
import { createHttpClient, type HttpClient } from '../../src/download/http-client.ts';
import { parseAllowlist } from '../../src/download/url-guard.ts';
import { AppError } from '../../src/errors.ts';
import { createLocalRecordingStore } from '../../src/storage/local-recording-store.ts';
import { LEGACY_IDLE_MS } from '../../src/storage/temp-directory.ts';
import {
  assertRoomForRecording,
  DATABASE_HEADROOM_BYTES,
  formatBytes,
  measureFreeSpace,
  removeTempFile,
  runStorageOperation,
  storageFault,
} from '../../src/storage/storage-faults.ts';
import { startFakeWavoipStorage, type FakeWavoipStorage } from '../support/fake-wavoip-storage.ts';
import { mountTmpfs, tmpfsUnavailableReason, type Tmpfs } from '../support/tmpfs.ts';
import { sha256 } from '../support/sha256.ts';

const wav = fs.readFileSync(new URL('../fixtures/audio/call-pt-br-9s.wav', import.meta.url));
const ogg = fs.readFileSync(new URL('../fixtures/audio/call-pt-br-9s.ogg', import.meta.url));

function fsError(code: string, message: string, syscall = 'write'): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: ${message}, ${syscall}`), { code, syscall });
}

async function failure(promise: Promise<unknown>): Promise<AppError> {
  const error = await promise.then(
    () => {
      throw new Error('expected a failure');
    },
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(AppError);
  return error as AppError;
}

describe('storageFault: filesystem errors as reasons an operator can act on', () => {
  it.each([
    { errno: 'ENOSPC', text: 'no space left on device', code: 'STORAGE_FULL', message: 'Recording storage is full (no space left on device): could not write the temporary recording file' },
    { errno: 'EDQUOT', text: 'disk quota exceeded', code: 'STORAGE_FULL', message: 'Recording storage is full (disk quota exceeded): could not write the temporary recording file' },
    { errno: 'EROFS', text: 'read-only file system', code: 'STORAGE_READ_ONLY', message: 'Recording storage is read-only (read-only file system): could not write the temporary recording file' },
    { errno: 'EACCES', text: 'permission denied', code: 'STORAGE_NOT_WRITABLE', message: 'Recording storage is not writable (permission denied): could not write the temporary recording file' },
    { errno: 'EPERM', text: 'operation not permitted', code: 'STORAGE_NOT_WRITABLE', message: 'Recording storage is not writable (operation not permitted): could not write the temporary recording file' },
    { errno: 'EIO', text: 'i/o error', code: 'STORAGE_IO', message: 'Recording storage failed (input/output error): could not write the temporary recording file' },
  ])('$errno → $code, retryable, with the cause kept', ({ errno, text, code, message }) => {
    const cause = fsError(errno, text);
    const error = storageFault('write the temporary recording file', cause);
    expect(error).toBeInstanceOf(AppError);
    expect(error).toMatchObject({ code, message, retryable: true, statusCode: 500 });
    expect(error.cause).toBe(cause);
  });

  it('any other filesystem error → STORAGE, retryable, with the original message', () => {
    const error = storageFault('move a recording to a.ogg', fsError('ENOTDIR', 'not a directory', 'rename'));
    expect(error).toMatchObject({ code: 'STORAGE', retryable: true, message: 'Could not move a recording to a.ogg: ENOTDIR: not a directory, rename' });
  });

  it('passes an AppError through unchanged, so the first, most precise reason wins', () => {
    const original = storageFault('write the temporary recording file', fsError('ENOSPC', 'no space left on device'));
    expect(storageFault('move a recording to a.ogg', original)).toBe(original);
  });

  it('copes with a thrown value that is not an Error', () => {
    expect(storageFault('stat a.ogg', 'weird')).toMatchObject({ code: 'STORAGE', message: 'Could not stat a.ogg: weird' });
  });

  it('runStorageOperation returns the result, or throws the mapped fault', async () => {
    expect(await runStorageOperation('read', async () => 42)).toBe(42);
    const error = await failure(
      runStorageOperation('remove a.ogg', async () => {
        throw fsError('EROFS', 'read-only file system', 'unlink');
      }),
    );
    expect(error).toMatchObject({ code: 'STORAGE_READ_ONLY', message: 'Recording storage is read-only (read-only file system): could not remove a.ogg' });
  });
});

describe('removeTempFile', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'remove-temp-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('removes the file, and a missing file is fine', async () => {
    await writeFile(join(dir, 'a.part'), 'x');
    expect(await removeTempFile(join(dir, 'a.part'))).toBe(true);
    expect(await removeTempFile(join(dir, 'a.part'))).toBe(true);
    expect(await readdir(dir)).toEqual([]);
  });

  it('never throws: a path that cannot be removed answers false', async () => {
    await writeFile(join(dir, 'file'), 'x');
    // A path below a regular file: ENOTDIR, which force does not excuse.
    expect(await removeTempFile(join(dir, 'file', 'a.part'))).toBe(false);
  });
});

describe('formatBytes', () => {
  it.each([
    [0, '0 B'],
    [512, '512 B'],
    [1024, '1 KiB'],
    [12_345, '12.1 KiB'],
    [DATABASE_HEADROOM_BYTES, '64 MiB'],
    [1.5 * 1024 ** 3, '1.5 GiB'],
    [-5, '0 B'],
  ])('%d → %s', (bytes, text) => {
    expect(formatBytes(bytes)).toBe(text);
  });
});

describe('assertRoomForRecording (on the real free space of the temp directory)', () => {
  const free = () => {
    const stats = fs.statfsSync(tmpdir());
    return stats.bavail * stats.bsize;
  };

  it('passes when the recording leaves the headroom free', async () => {
    await assertRoomForRecording(tmpdir(), { needed: 1024, written: 0, headroom: 0 });
  });

  it('refuses a recording that would eat into the headroom, naming sizes', async () => {
    const error = await failure(assertRoomForRecording(tmpdir(), { needed: free() + 1024 ** 3, written: 0, headroom: DATABASE_HEADROOM_BYTES }));
    expect(error).toMatchObject({ code: 'STORAGE_FULL', retryable: true });
    expect(error.message).toMatch(/^Recording storage is full: the recording needs \S+ \w+, \S+ \w+ is free and 64 MiB is kept free for the database$/);
  });

  it('refuses, when the length is unknown, once the free space is below the headroom', async () => {
    const headroom = free() + 1024 ** 3;
    const before = await failure(assertRoomForRecording(tmpdir(), { needed: 0, written: 0, headroom }));
    expect(before.message).toMatch(/^Recording storage is full: \S+ \w+ is free and \S+ \w+ is kept free for the database$/);
    const during = await failure(assertRoomForRecording(tmpdir(), { needed: 0, written: 3 * 1024 ** 2, headroom }));
    expect(during.message).toMatch(/^Recording storage is full: \S+ \w+ is left after 3 MiB of the recording, and \S+ \w+ is kept free for the database$/);
    const known = await failure(assertRoomForRecording(tmpdir(), { needed: 1024 ** 2, written: 3 * 1024 ** 2, headroom }));
    expect(known.message).toMatch(/^Recording storage is full: \S+ \w+ is left after 3 MiB of the recording, 1 MiB more is needed, and \S+ \w+ is kept free/);
  });

  it('measures the free space statfs reports, and a filesystem that reports no size never looks full', async () => {
    expect(await measureFreeSpace(tmpdir())).toBeGreaterThan(0);
    expect(fs.statfsSync('/proc').blocks).toBe(0);
    expect(await measureFreeSpace('/proc')).toBe(Number.POSITIVE_INFINITY);
    await assertRoomForRecording('/proc', { needed: 1024 ** 3, written: 0, headroom: DATABASE_HEADROOM_BYTES });
  });

  it('a directory that is gone is a STORAGE fault, not a crash', async () => {
    const error = await failure(assertRoomForRecording(join(tmpdir(), 'no-such-dir-for-room-check', 'x'), { needed: 0, written: 0, headroom: 0 }));
    expect(error).toMatchObject({ code: 'STORAGE', retryable: true });
    expect(error.message).toMatch(/^Could not read the free space of the recording storage: ENOENT/);
  });
});

// ---------------------------------------------------------------------------------------------
// The kernel's own ENOSPC and EROFS, on a tmpfs.
// ---------------------------------------------------------------------------------------------
const unavailable = tmpfsUnavailableReason();

describe.skipIf(unavailable !== undefined)(`on a real full or read-only disk (tmpfs)${unavailable ? ` — skipped: ${unavailable}` : ''}`, () => {
  let storage: FakeWavoipStorage;
  let client: HttpClient;
  let root: string;
  let disk: Tmpfs;
  let tmpDir: string;
  /** Serves `body` chunked, so the downloader cannot know the length before it writes. */
  let chunkedServer: Server;
  let chunkedOrigin: string;

  beforeAll(async () => {
    storage = await startFakeWavoipStorage();
    client = createHttpClient();
    chunkedServer = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'audio/wav' });
      res.write(wav.subarray(0, 4096));
      res.end(wav.subarray(4096));
    });
    await new Promise<void>((resolve) => chunkedServer.listen(0, '127.0.0.1', resolve));
    chunkedOrigin = `127.0.0.1:${(chunkedServer.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    await client?.close();
    await storage?.close();
    await new Promise((resolve) => chunkedServer?.close(resolve));
  });

  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'storage-faults-'));
    disk = mountTmpfs(root, '128k');
    tmpDir = join(root, '.tmp');
    fs.mkdirSync(tmpDir);
  });

  afterEach(() => {
    disk?.unmount();
  });

  function download(url: string, headroom: number): Promise<DownloadedRecording> {
    return downloadRecording({
      url,
      allowlist: parseAllowlist(`${new URL(storage.origin).host},${chunkedOrigin}`),
      client,
      maxBytes: 10 * 1024 * 1024,
      tmpDir,
      signal: new AbortController().signal,
      storageHeadroomBytes: headroom,
    });
  }

  it('ENOSPC while writing (no headroom asked) → STORAGE_FULL, the temp file removed, the space back', async () => {
    const freeBefore = disk.free();
    expect(wav.length).toBeGreaterThan(freeBefore);
    const error = await failure(download(`http://${chunkedOrigin}/big`, 0));
    expect(error).toMatchObject({
      code: 'STORAGE_FULL',
      retryable: true,
      message: 'Recording storage is full (no space left on device): could not write the temporary recording file',
    });
    expect((error.cause as NodeJS.ErrnoException).code).toBe('ENOSPC');
    expect(await readdir(tmpDir)).toEqual([]);
    expect(disk.free()).toBe(freeBefore);
  });

  it('with Content-Length, a recording bigger than the room is refused before anything is written', async () => {
    storage.setRoute('/big', { kind: 'body', body: wav, contentType: 'audio/wav' });
    const error = await failure(download(storage.url('/big'), 0));
    expect(error).toMatchObject({ code: 'STORAGE_FULL', retryable: true });
    expect(error.message).toMatch(/^Recording storage is full: the recording needs 291.2 KiB, \d+ KiB is free and 0 B is kept free for the database$/);
    expect(await readdir(tmpDir)).toEqual([]);
  });

  it('the default headroom keeps a small recording out of a disk with less than 64 MiB free', async () => {
    storage.setRoute('/small', { kind: 'body', body: ogg, contentType: 'audio/ogg' });
    const error = await failure(download(storage.url('/small'), DATABASE_HEADROOM_BYTES));
    expect(error.message).toMatch(/^Recording storage is full: \d+ KiB is free and 64 MiB is kept free for the database$/);
    // Refused before asking the storage for it at all.
    expect(storage.requests('/small')).toBe(0);
    // The same recording fits once no headroom is asked: the refusal was the headroom's.
    const file = await download(storage.url('/small'), 0);
    expect(file.sha256).toBe(sha256(ogg));
  });

  it('EROFS → STORAGE_READ_ONLY when the temp file cannot even be created', async () => {
    storage.setRoute('/small', { kind: 'body', body: ogg, contentType: 'audio/ogg' });
    disk.remount('ro');
    const error = await failure(download(storage.url('/small'), 0));
    expect(error).toMatchObject({
      code: 'STORAGE_READ_ONLY',
      retryable: true,
      message: 'Recording storage is read-only (read-only file system): could not create the temporary recording file',
    });
    disk.remount('rw');
    expect(await readdir(tmpDir)).toEqual([]);
  });

  // A tmpfs of a few hundred KiB: no room for the 64 MiB the service keeps for the database.
  describe('the local store', () => {
    it('put on read-only storage → STORAGE_READ_ONLY; put works again once writable', async () => {
      const store = await createLocalRecordingStore(join(root, 'recordings'), { headroomBytes: 0 });
      const temp = join(store.tmpDir, 'a.part');
      await writeFile(temp, 'recording');
      disk.remount('ro');
      const error = await failure(store.put(temp, 'call-1.ogg'));
      expect(error).toMatchObject({ code: 'STORAGE_READ_ONLY', message: 'Recording storage is read-only (read-only file system): could not move a recording to call-1.ogg' });
      disk.remount('rw');
      await store.put(temp, 'call-1.ogg');
      expect(await store.stat('call-1.ogg')).toEqual({ size: 9 });
    });

    it.each(['put', 'check'] as const)('discardTemp on read-only storage never throws; the file goes after the next %s once writable', async (write) => {
      const store = await createLocalRecordingStore(join(root, 'recordings'), { headroomBytes: 0 });
      const stranded = join(store.tmpDir, 'failed-attempt.part');
      await writeFile(stranded, 'partial');
      const next = join(store.tmpDir, 'next.part');
      await writeFile(next, 'recording');
      disk.remount('ro');
      await store.discardTemp(stranded);
      expect(fs.existsSync(stranded)).toBe(true);
      disk.remount('rw');
      if (write === 'put') await store.put(next, 'call-1.ogg');
      else await store.check();
      expect(fs.existsSync(stranded)).toBe(false);
    });

    it('check on a full disk fails STORAGE_FULL and leaves no probe file behind', async () => {
      const store = await createLocalRecordingStore(join(root, 'recordings'), { headroomBytes: 0 });
      // Fill the disk to the last byte, as another program would.
      const ballast = fs.openSync(join(root, 'ballast'), 'w');
      try {
        const chunk = Buffer.alloc(4096);
        for (;;) fs.writeSync(ballast, chunk);
      } catch (error) {
        expect((error as NodeJS.ErrnoException).code).toBe('ENOSPC');
      } finally {
        fs.closeSync(ballast);
      }
      for (let probe = 0; probe < 3; probe++) {
        const error = await failure(store.check());
        expect(error).toMatchObject({ code: 'STORAGE_FULL', message: 'Recording storage is full (no space left on device): could not write to the recordings directory' });
      }
      expect(await readdir(store.tmpDir)).toEqual([]);
      fs.rmSync(join(root, 'ballast'));
      await store.check();
    });

    it('check on read-only storage fails STORAGE_READ_ONLY', async () => {
      const store = await createLocalRecordingStore(join(root, 'recordings'), { headroomBytes: 0 });
      disk.remount('ro');
      expect(await failure(store.check())).toMatchObject({ code: 'STORAGE_READ_ONLY' });
      disk.remount('rw');
      await store.check();
    });

    it('cleanTemp on read-only storage skips what it cannot remove instead of failing the start', async () => {
      const store = await createLocalRecordingStore(join(root, 'recordings'), { headroomBytes: 0 });
      const tempRoot = join(root, 'recordings', '.tmp');
      const longAgo = new Date(Date.now() - LEGACY_IDLE_MS - 1_000);
      // A process killed mid-download, long enough ago that its lock is stale.
      const dead = join(tempRoot, randomUUID());
      await mkdir(dead);
      await mkdir(`${dead}.lock`);
      await writeFile(join(dead, 'killed.part'), 'partial');
      await utimes(`${dead}.lock`, longAgo, longAgo);
      // And an earlier release's.
      await writeFile(join(tempRoot, 'killed.part'), 'partial');
      await utimes(join(tempRoot, 'killed.part'), longAgo, longAgo);
      disk.remount('ro');
      expect(await store.cleanTemp()).toBe(0);
      disk.remount('rw');
      // Not waiting for the next start: the first write that works takes the file away…
      await store.check();
      expect(fs.existsSync(join(tempRoot, 'killed.part'))).toBe(false);
      // …and the next sweep the area.
      expect(await store.cleanTemp()).toBe(1);
      expect((await readdir(tempRoot)).sort()).toEqual([basename(store.tmpDir), `${basename(store.tmpDir)}.lock`].sort());
      await store.close();
    });
  });
});
