/**
 * Storage faults on our own side: the disk the recordings go to fills up or turns read-only.
 * The real service (webhook → event processor → scheduler → download → store → API) runs on a
 * tmpfs that the kernel really fills or remounts read-only, next to a loopback fake WaVoIP
 * storage serving the real audio of test/fixtures/audio. Each case shows what the operator sees:
 * the job is retried later (never failed), the reason is on the call in plain words, nothing is
 * left half-written, webhooks keep being answered 200 and stored, and once the disk is fixed the
 * retry attaches the very bytes the storage served.
 *
 * Downloads leave the last DATABASE_HEADROOM_BYTES of the disk to the database, so a recording
 * that does not fit is refused (or stopped) before it can take the room webhooks need; the
 * kernel's own ENOSPC is shown too, with the disk filled by another program mid-download.
 *
 * Needs root to mount a tmpfs; skipped, saying so, where that is not possible. Nothing here
 * asserts how long anything took.
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DATABASE_HEADROOM_BYTES } from '../../src/storage/storage-faults.ts';
import { OWNER_STALE_MS } from '../../src/storage/temp-directory.ts';
import { startFakeWavoipStorage, type FakeWavoipStorage } from '../support/fake-wavoip-storage.ts';
import { makeDataDir, startInProcessService, testEnvironment, waitFor, type CallView, type InProcessService } from '../support/service-harness.ts';
import { mountTmpfs, tmpfsUnavailableReason, type Tmpfs } from '../support/tmpfs.ts';
import { sha256 } from '../support/sha256.ts';

const MiB = 1024 ** 2;
const fixture = {
  ogg: fs.readFileSync(new URL('../fixtures/audio/call-pt-br-9s.ogg', import.meta.url)),
  wav: fs.readFileSync(new URL('../fixtures/audio/call-pt-br-9s.wav', import.meta.url)),
};

/**
 * The WAV fixture's audio played `times` over, as one longer call: bigger than the room a small
 * disk has left, and still a well-formed recording the service sniffs, parses and attaches.
 */
function loopedWav(source: Buffer, times: number): Buffer {
  // A canonical PCM WAV: a 44-byte header whose "data" chunk length sits at byte 40.
  expect(source.toString('ascii', 36, 40)).toBe('data');
  const pcm = source.subarray(44, 44 + source.readUInt32LE(40));
  const wav = Buffer.concat([source.subarray(0, 44), ...Array.from({ length: times }, () => pcm)]);
  wav.writeUInt32LE(wav.length - 8, 4);
  wav.writeUInt32LE(pcm.length * times, 40);
  return wav;
}

const bigWav = loopedWav(fixture.wav, 40); // about 11.4 MiB, six minutes

/** Polls the retries of the job as fast as the test env lets them come; no give-up meanwhile. */
const FAST_RETRIES = { POLL_INITIAL_DELAY: '100ms', POLL_MAX_DELAY: '300ms', POLL_MAX_WAIT: '10m' } as const;

/**
 * A call's webhooks sent while the disk is in trouble: each answered 200, and each stored
 * (the call and its timeline are there to read).
 */
async function expectWebhooksStored(service: InProcessService, callId: string): Promise<void> {
  const events = [
    { type: 'CALL', action: 'CREATE', whatsapp_call_id: callId, status: 'ACTIVE', direction: 'INCOMING', caller: '5511911112222' },
    { type: 'CALL', action: 'UPDATE', whatsapp_call_id: callId, status: 'ENDED', duration: 42 },
  ];
  for (const event of events) {
    const response = await service.postWebhook(event);
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({ received: true });
  }
  let call: CallView | undefined;
  await waitFor(async () => {
    const response = await service.api(`/api/calls/${callId}`);
    if (response.status !== 200) return false;
    call = (await response.json()) as CallView;
    return call.events.length === events.length && call.status === 'ENDED';
  }, `the webhooks of ${callId} to be stored and applied`);
  expect(call?.events.map((event) => event.type)).toEqual(['CALL', 'CALL']);
}

/** Waits until the call has failed `attempts` times and is still pending; returns its attachment. */
async function failedAttempts(service: InProcessService, callId: string, attempts: number): Promise<CallView['attachment']> {
  let last: CallView['attachment'] | undefined;
  await waitFor(async () => {
    last = (await service.call(callId)).attachment;
    return last.state !== 'pending' || (last.attempts ?? 0) >= attempts;
  }, `${attempts} failed attempts for ${callId} (last: ${JSON.stringify(last)})`);
  expect(last?.state).toBe('pending');
  return last as CallView['attachment'];
}

const retriesLogged = (service: InProcessService, callId: string) => service.logsFor(callId).filter((line) => /retrying in/.test(line.msg));
const failuresLogged = (service: InProcessService, callId: string) => service.logsFor(callId).filter((line) => line.level >= 50);

/** Temp files of downloads (readiness probes, `check-…`, are not downloads). */
function partialDownloads(dataDir: string): string[] {
  const tmp = path.join(dataDir, 'recordings', '.tmp');
  return fs
    .readdirSync(tmp, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile() && !entry.name.startsWith('check-'))
    .map((entry) => entry.name);
}

function storedRecordings(dataDir: string): string[] {
  const dir = path.join(dataDir, 'recordings');
  return fs.readdirSync(dir, { withFileTypes: true }).filter((entry) => entry.isFile()).map((entry) => entry.name);
}

async function readyz(service: InProcessService): Promise<{ status: number; body: unknown }> {
  const response = await fetch(`${service.url}/readyz`);
  return { status: response.status, body: await response.json() };
}

async function expectAttachedIntact(service: InProcessService, callId: string, bytes: Buffer): Promise<void> {
  const call = await service.waitForAttachment(callId, 'attached');
  expect(call.attachment).toMatchObject({ state: 'attached', reason: null, size: bytes.length, sha256: sha256(bytes) });
  const served = Buffer.from(await (await service.api(`/api/calls/${callId}/recording`)).arrayBuffer());
  expect(sha256(served)).toBe(sha256(bytes));
  expect(failuresLogged(service, callId)).toEqual([]);
}

/**
 * A loopback storage whose first answer sends `firstBytes` of the body, then waits until the
 * test opens the gate before sending the rest: the moment to fill the disk mid-download. Later
 * requests get the whole body at once. Chunked, so the service cannot know the length ahead.
 */
interface GatedStorage {
  host: string;
  url(path: string): string;
  requests(): number;
  firstPartSent: Promise<void>;
  open(): void;
  close(): Promise<void>;
}

async function startGatedStorage(body: Buffer, firstBytes: number): Promise<GatedStorage> {
  let count = 0;
  let open!: () => void;
  const gate = new Promise<void>((resolve) => (open = resolve));
  let firstSent!: () => void;
  const firstPartSent = new Promise<void>((resolve) => (firstSent = resolve));
  const server: Server = createServer((req, res) => {
    count++;
    req.socket.on('error', () => {});
    res.writeHead(200, { 'content-type': 'audio/wav' });
    if (count === 1) {
      res.write(body.subarray(0, firstBytes), () => firstSent());
      void gate.then(() => res.end(body.subarray(firstBytes)));
    } else {
      res.write(body.subarray(0, firstBytes));
      res.end(body.subarray(firstBytes));
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    host,
    url: (urlPath) => `http://${host}${urlPath}`,
    requests: () => count,
    firstPartSent,
    open,
    close: () =>
      new Promise<void>((resolve) => {
        open();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Fills `dir`'s disk, as another program would, until only `leave` bytes are free. */
function fillDisk(disk: Tmpfs, file: string, leave: number): void {
  const size = disk.free() - leave;
  expect(size).toBeGreaterThan(0);
  const fd = fs.openSync(file, 'w');
  try {
    const chunk = Buffer.alloc(MiB);
    for (let written = 0; written < size; written += chunk.length) fs.writeSync(fd, chunk, 0, Math.min(chunk.length, size - written));
  } finally {
    fs.closeSync(fd);
  }
}

const unavailable = tmpfsUnavailableReason();
const skipNote = unavailable === undefined ? '' : ` — skipped: ${unavailable}`;

// ---------------------------------------------------------------------------------------------
// Disk full. The whole DATA_DIR (database and recordings) on a tmpfs with room for the database
// but not for a recording: DATABASE_HEADROOM_BYTES, which downloads leave to the database so
// that webhooks can still be stored, plus 8 MiB. (In the postgres project the database is on
// the server, not on this disk: the same cases then show the recordings' side alone.)
// ---------------------------------------------------------------------------------------------
describe.skipIf(unavailable !== undefined)(`disk full: DATA_DIR on a small tmpfs${skipNote}`, () => {
  const DISK_SIZE = `${(DATABASE_HEADROOM_BYTES + 8 * MiB) / MiB}m`;
  let dataDir: string;
  let disk: Tmpfs | undefined;
  let storage: FakeWavoipStorage;
  let gated: GatedStorage;
  let service: InProcessService;
  const ballast = () => path.join(dataDir, 'another-programs-file');

  beforeAll(async () => {
    dataDir = await makeDataDir();
    disk = mountTmpfs(dataDir, DISK_SIZE);
    storage = await startFakeWavoipStorage();
    gated = await startGatedStorage(bigWav, 64 * 1024);
    service = await startInProcessService(
      testEnvironment(storage.origin, dataDir, { ...FAST_RETRIES, RECORDING_URL_ALLOWLIST: `${new URL(storage.origin).host},${gated.host}` }),
    );
    expect(bigWav.length).toBeGreaterThan(disk.free() - DATABASE_HEADROOM_BYTES);
  });

  afterAll(async () => {
    try {
      await service?.stop();
      await storage?.close();
      await gated?.close();
    } finally {
      disk?.unmount();
    }
  });

  it('a recording bigger than the room left: refused before a byte is written, retried, the reason on the call', async () => {
    const callId = 'FULL-KNOWN-LENGTH';
    storage.setRoute(`/${callId}`, { kind: 'body', body: bigWav, contentType: 'audio/wav' });
    await service.postReady(callId, storage.url(`/${callId}`));

    const waiting = await failedAttempts(service, callId, 2);
    const reason = /^Recording storage is full: the recording needs 11\.4 MiB, [\d.]+ MiB is free and 64 MiB is kept free for the database$/;
    expect(waiting).toMatchObject({ state: 'pending', reason: null });
    expect(waiting.last_error).toMatch(reason);
    expect(Date.parse(waiting.next_attempt_at ?? '')).toBeLessThan(Date.parse(waiting.give_up_at ?? ''));
    const retries = retriesLogged(service, callId);
    expect(retries.length).toBeGreaterThanOrEqual(2);
    for (const line of retries) {
      expect(line.code).toBe('STORAGE_FULL');
      expect(line.reason).toMatch(reason);
    }
    expect(failuresLogged(service, callId)).toEqual([]);
    expect(storage.requests(`/${callId}`)).toBeGreaterThanOrEqual(2);
    expect(partialDownloads(dataDir)).toEqual([]);

    await expectWebhooksStored(service, 'DURING-FULL-KNOWN-LENGTH');
  });

  it('the disk filled by another program mid-download: the kernel says ENOSPC, the temp file goes, the job is retried', async () => {
    const callId = 'FULL-ENOSPC';
    await service.postReady(callId, gated.url(`/${callId}`));
    await gated.firstPartSent;
    // The download has its temp file (the call above never makes one: it is refused first).
    await waitFor(() => partialDownloads(dataDir).length === 1, 'the download to create its temp file');
    // Less left than the rest of the recording, and than the 1 MiB after which a download
    // checks the room itself: the write runs into the full disk.
    fillDisk(disk as Tmpfs, ballast(), 768 * 1024);
    gated.open();

    await waitFor(() => retriesLogged(service, callId).length >= 1, 'the mid-download failure to be logged');
    const [first] = retriesLogged(service, callId);
    expect(first).toMatchObject({ code: 'STORAGE_FULL', reason: 'Recording storage is full (no space left on device): could not write the temporary recording file' });
    // The temp file is gone and its space back: the next attempts are refused before they
    // write, so nothing comes back into .tmp.
    const waiting = await failedAttempts(service, callId, 3);
    expect(partialDownloads(dataDir)).toEqual([]);
    expect(waiting.last_error).toMatch(/^Recording storage is full: [\d.]+ KiB is free and 64 MiB is kept free for the database$/);
    expect(failuresLogged(service, callId)).toEqual([]);

    // The database still has room: webhooks go on being acknowledged and stored, and /readyz
    // says so, while telling that downloads cannot be stored.
    await expectWebhooksStored(service, 'DURING-FULL-ENOSPC');
    expect(await readyz(service)).toEqual({ status: 200, body: { status: 'degraded', database: 'ok', storage: 'unavailable' } });
    fs.rmSync(ballast());
    expect((await readyz(service)).body).toMatchObject({ status: 'ready' });
  });

  it('a recording without Content-Length: written until the room runs out, then its temp file removed, retried', async () => {
    const callId = 'FULL-CHUNKED';
    storage.setRoute(`/${callId}`, { kind: 'body', body: bigWav, contentType: 'audio/wav', chunked: true });
    await service.postReady(callId, storage.url(`/${callId}`));

    // Stopped while writing, by the room check. (The call above retries the same way now that
    // its disk is back, so an attempt that starts while the other's temp file holds the room
    // is refused before it asks: "… is free and 64 MiB is kept free for the database".)
    const stoppedWhileWriting = /^Recording storage is full: [\d.]+ MiB is left after [\d.]+ MiB of the recording, and 64 MiB is kept free for the database$/;
    await waitFor(() => retriesLogged(service, callId).some((line) => stoppedWhileWriting.test(line.reason as string)), 'an attempt stopped by the room check');
    const waiting = await failedAttempts(service, callId, 2);
    expect(waiting.last_error).toMatch(/^Recording storage is full: /);
    const retries = retriesLogged(service, callId);
    expect(retries.length).toBeGreaterThanOrEqual(2);
    for (const line of retries) {
      expect(line.code).toBe('STORAGE_FULL');
      expect(line.reason).toMatch(/^Recording storage is full: [\d.]+ MiB is (left after [\d.]+ MiB of the recording, and|free and) 64 MiB is kept free for the database$/);
    }
    expect(failuresLogged(service, callId)).toEqual([]);

    await expectWebhooksStored(service, 'DURING-FULL-CHUNKED');
  });

  it('once the disk is grown, every waiting recording attaches intact; nothing partial is left', async () => {
    disk?.remount(`size=${(DATABASE_HEADROOM_BYTES + 128 * MiB) / MiB}m`);
    for (const callId of ['FULL-KNOWN-LENGTH', 'FULL-ENOSPC', 'FULL-CHUNKED']) await expectAttachedIntact(service, callId, bigWav);

    expect(partialDownloads(dataDir)).toEqual([]);
    expect(storedRecordings(dataDir)).toHaveLength(3);
    // Every webhook acknowledged during the fault is still there.
    for (const callId of ['DURING-FULL-KNOWN-LENGTH', 'DURING-FULL-ENOSPC', 'DURING-FULL-CHUNKED']) {
      expect((await service.call(callId)).events).toHaveLength(2);
    }
    expect((await readyz(service)).status).toBe(200);
  });
});

// ---------------------------------------------------------------------------------------------
// Read-only recordings directory. DATA_DIR/recordings is its own tmpfs (the database stays
// outside it, writable), remounted read-only after the service started.
// ---------------------------------------------------------------------------------------------
describe.skipIf(unavailable !== undefined)(`read-only recordings directory${skipNote}`, () => {
  let dataDir: string;
  let disk: Tmpfs | undefined;
  let storage: FakeWavoipStorage;
  let service: InProcessService;
  let env: Record<string, string>;

  beforeAll(async () => {
    dataDir = await makeDataDir();
    const recordings = path.join(dataDir, 'recordings');
    fs.mkdirSync(recordings);
    disk = mountTmpfs(recordings, `${(DATABASE_HEADROOM_BYTES + 64 * MiB) / MiB}m`);
    storage = await startFakeWavoipStorage();
    env = testEnvironment(storage.origin, dataDir, FAST_RETRIES);
    service = await startInProcessService(env);
  });

  afterAll(async () => {
    try {
      await service?.stop();
      await storage?.close();
    } finally {
      disk?.unmount();
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it('read-only: retried with the reason on the call, /readyz "degraded", webhooks still 200; writable again → attached, /readyz "ready"', async () => {
    expect((await readyz(service)).status).toBe(200);
    disk?.remount('ro');

    expect(await readyz(service)).toEqual({ status: 200, body: { status: 'degraded', database: 'ok', storage: 'unavailable' } });
    expect(service.logs().some((line) => line.msg === 'Readiness check failed: recording storage: Recording storage is read-only (read-only file system): could not write to the recordings directory')).toBe(true);

    const callId = 'READ-ONLY';
    storage.setRoute(`/${callId}`, { kind: 'body', body: fixture.ogg, contentType: 'audio/ogg' });
    await service.postReady(callId, storage.url(`/${callId}`));
    const waiting = await failedAttempts(service, callId, 2);
    const reason = 'Recording storage is read-only (read-only file system): could not create the temporary recording file';
    expect(waiting).toMatchObject({ state: 'pending', reason: null, last_error: reason });
    const retries = retriesLogged(service, callId);
    expect(retries.length).toBeGreaterThanOrEqual(2);
    for (const line of retries) expect(line).toMatchObject({ code: 'STORAGE_READ_ONLY', reason });
    expect(failuresLogged(service, callId)).toEqual([]);

    await expectWebhooksStored(service, 'DURING-READ-ONLY');
    // A READY acknowledged while read-only is not lost either.
    storage.setRoute('/READ-ONLY-LATE', { kind: 'body', body: fixture.ogg, contentType: 'audio/ogg' });
    await service.postReady('READ-ONLY-LATE', storage.url('/READ-ONLY-LATE'));
    expect(((await service.call('READ-ONLY-LATE')).attachment).state).toBe('pending');

    disk?.remount('rw');
    await expectAttachedIntact(service, callId, fixture.ogg);
    await expectAttachedIntact(service, 'READ-ONLY-LATE', fixture.ogg);
    expect((await readyz(service)).body).toMatchObject({ status: 'ready' });
    expect(partialDownloads(dataDir)).toEqual([]);
    expect(storedRecordings(dataDir)).toHaveLength(2);
  });

  it('restarted while read-only, with a partial download left by a killed run: starts, takes webhooks, retries; the leftover goes once writable', async () => {
    await service.stop();
    // What a process killed mid-download leaves: its temp area, and its lock, stale by now.
    const deadArea = path.join(dataDir, 'recordings', '.tmp', randomUUID());
    fs.mkdirSync(deadArea);
    fs.mkdirSync(`${deadArea}.lock`);
    const longAgo = new Date(Date.now() - OWNER_STALE_MS - 1_000);
    fs.utimesSync(`${deadArea}.lock`, longAgo, longAgo);
    const leftover = path.join(deadArea, 'killed-mid-download.part');
    fs.writeFileSync(leftover, bigWav.subarray(0, 100_000));
    disk?.remount('ro');

    service = await startInProcessService(env);
    expect((await readyz(service)).body).toMatchObject({ status: 'degraded', storage: 'unavailable' });
    const callId = 'READ-ONLY-AFTER-RESTART';
    storage.setRoute(`/${callId}`, { kind: 'body', body: fixture.ogg, contentType: 'audio/ogg' });
    await service.postReady(callId, storage.url(`/${callId}`));
    const waiting = await failedAttempts(service, callId, 1);
    // Started read-only, the process could not yet take a temp area of its own.
    expect(waiting.last_error).toBe('Recording storage is read-only (read-only file system): could not lock a temporary area in the recordings directory');
    await expectWebhooksStored(service, 'DURING-READ-ONLY-RESTART');
    expect(fs.existsSync(leftover)).toBe(true);

    disk?.remount('rw');
    await expectAttachedIntact(service, callId, fixture.ogg);
    // At the next sweep of the temp directory.
    await waitFor(() => !fs.existsSync(deadArea), 'the leftover to go once writable');
    expect(partialDownloads(dataDir)).toEqual([]);
    expect(storedRecordings(dataDir)).toHaveLength(3);
  });
});
