/**
 * Two processes on one DATA_DIR and one database: a rolling restart starts the new process while
 * the old one still downloads, or a second one is started there by mistake. Neither may break
 * the other's downloads (the start-up clean-up once deleted every temp file, a live process's
 * too, whose download then failed on rename and was fetched again): every recording is fetched
 * once and attached once, and what a dead process left is still cleaned up.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeWavoipStorage, type FakeWavoipStorage } from '../support/fake-wavoip-storage.ts';
import { NO_POLLING, childServicesKilledAfterEach, makeDataDir, partialDownloads, tempRoot, testEnvironment, waitFor, type ChildService } from '../support/service-harness.ts';
import { sha256 } from '../support/sha256.ts';

const wav = fs.readFileSync(new URL('../fixtures/audio/call-pt-br-9s.wav', import.meta.url));
const wavSha256 = sha256(wav);

let storage: FakeWavoipStorage;

beforeAll(async () => {
  storage = await startFakeWavoipStorage();
});
afterAll(async () => {
  await storage?.close();
});

const start = childServicesKilledAfterEach();



function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((settle) => (resolve = settle));
  return { promise, resolve };
}

const attachLines = (service: ChildService, callId: string) =>
  service.logsFor(callId).filter((line) => line.msg.includes('Recording attached successfully')).length;

/** Posts READY for each call and waits until each download has written half its file. */
async function downloadsUnderWay(service: ChildService, dataDir: string, callIds: string[]): Promise<string[]> {
  for (const callId of callIds) await service.postReady(callId, storage.url(`/${callId}`));
  await waitFor(
    () => callIds.every((callId) => storage.requests(`/${callId}`) === 1) && partialDownloads(dataDir).filter((file) => fs.statSync(file, { throwIfNoEntry: false })?.size === Math.floor(wav.length / 2)).length === callIds.length,
    `${callIds.length} downloads half written`,
  );
  return partialDownloads(dataDir);
}

describe('two processes on one DATA_DIR', () => {
  it("a second process's start leaves the first one's download alone: attached once, fetched once", async () => {
    const dataDir = await makeDataDir();
    const env = testEnvironment(storage.origin, dataDir, NO_POLLING);
    const release = deferred();
    storage.setRoute('/SECOND-START', { kind: 'paused-mid-body', body: wav, contentType: 'audio/wav', until: release.promise });
    const first = await start(env);
    const [partial] = await downloadsUnderWay(first, dataDir, ['SECOND-START']);

    // Its start-up clean-up has run once it listens.
    const second = await start(env);
    expect(fs.existsSync(partial as string)).toBe(true);

    release.resolve();
    const call = await first.waitForAttachment('SECOND-START', 'attached');
    expect(call.attachment).toMatchObject({ size: wav.length, sha256: wavSha256 });
    expect(storage.requests('/SECOND-START')).toBe(1);
    expect(attachLines(first, 'SECOND-START') + attachLines(second, 'SECOND-START')).toBe(1);
    expect(first.logs().some((line) => /Download for call SECOND-START failed/.test(line.msg))).toBe(false);
  });

  it('rolling restart: the new process starts, the old one drains its downloads on SIGTERM; nothing lost, nothing fetched twice', async () => {
    const dataDir = await makeDataDir();
    // Far longer than the test needs: the old process must finish its downloads, not abort them.
    const env = testEnvironment(storage.origin, dataDir, { ...NO_POLLING, SHUTDOWN_GRACE: '60s' });
    const release = deferred();
    const inFlight = ['ROLL-1', 'ROLL-2', 'ROLL-3', 'ROLL-4'];
    for (const callId of inFlight) storage.setRoute(`/${callId}`, { kind: 'paused-mid-body', body: wav, contentType: 'audio/wav', until: release.promise });
    const old = await start(env);
    const partials = await downloadsUnderWay(old, dataDir, inFlight);

    const next = await start(env);
    expect(partials).toHaveLength(inFlight.length);
    expect(partials.every((file) => fs.existsSync(file))).toBe(true);
    old.child.kill('SIGTERM');
    await waitFor(
      () => old.logs().some((line) => line.msg === 'Shutting down: stopped claiming jobs; waiting for 4 downloads in flight to finish (at most 60s)'),
      'the old process to drain its downloads',
    );
    // Meanwhile the new process takes the new work.
    storage.setRoute('/ROLL-NEW', { kind: 'body', body: wav, contentType: 'audio/wav' });
    await next.postReady('ROLL-NEW', storage.url('/ROLL-NEW'));
    await next.waitForAttachment('ROLL-NEW', 'attached');

    release.resolve();
    expect(await old.exited).toBe(0);
    expect(old.logs().map((line) => line.msg)).toContain('Shutting down: every download in flight finished');
    for (const callId of [...inFlight, 'ROLL-NEW']) {
      expect((await next.call(callId)).attachment).toMatchObject({ state: 'attached', size: wav.length, sha256: wavSha256 });
      expect(storage.requests(`/${callId}`)).toBe(1);
      expect(attachLines(old, callId) + attachLines(next, callId)).toBe(1);
    }
    for (const callId of inFlight) expect(attachLines(old, callId)).toBe(1);
    expect(partialDownloads(dataDir)).toEqual([]);

    expect(await next.kill('SIGTERM')).toBe(0);
    // Each process gave up its own area at its stop.
    expect(fs.readdirSync(tempRoot(dataDir))).toEqual([]);
  });

  it("removes what a killed process left, once its lock has gone stale, while another process runs", async () => {
    const dataDir = await makeDataDir();
    const env = testEnvironment(storage.origin, dataDir, NO_POLLING);
    storage.setRoute('/KILLED-WHILE-OTHER-RUNS', { kind: 'stall-mid-body', body: wav, contentType: 'audio/wav' });
    const killed = await start(env);
    const [partial] = await downloadsUnderWay(killed, dataDir, ['KILLED-WHILE-OTHER-RUNS']);
    await killed.kill('SIGKILL');

    storage.setRoute('/KILLED-WHILE-OTHER-RUNS', { kind: 'body', body: wav, contentType: 'audio/wav' });
    const survivor = await start(env);
    // The job comes back when the dead process's lease runs out, and is fetched again.
    await survivor.waitForAttachment('KILLED-WHILE-OTHER-RUNS', 'attached');
    // The dead process's area goes at a sweep once its lock is stale; no time is faked here.
    await waitFor(
      () => survivor.logs().some((line) => line.msg === 'Removed partial downloads left by a process that stopped; their jobs run again' && line.removed === 1),
      "the dead process's partial download to be swept",
      30_000,
    );
    expect(fs.existsSync(partial as string)).toBe(false);
    expect(partialDownloads(dataDir)).toEqual([]);
    // Only the live process's area (and its lock) is left.
    expect(fs.readdirSync(tempRoot(dataDir))).toHaveLength(2);
  }, 45_000);
});
