import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OWNER_STALE_MS } from '../../src/storage/temp-directory.ts';
import { startFakeWavoipStorage, type FakeWavoipStorage } from '../support/fake-wavoip-storage.ts';
import { NO_POLLING, childServicesKilledAfterEach, makeDataDir, partialDownloads, tempRoot, testEnvironment, waitFor } from '../support/service-harness.ts';
import { openTestDatabase } from '../support/test-database.ts';
import { sha256 } from '../support/sha256.ts';

const ogg = fs.readFileSync(new URL('../fixtures/audio/call-pt-br-9s.ogg', import.meta.url));
const wav = fs.readFileSync(new URL('../fixtures/audio/call-pt-br-9s.wav', import.meta.url));

let storage: FakeWavoipStorage;

beforeAll(async () => {
  storage = await startFakeWavoipStorage();
});
afterAll(async () => {
  await storage?.close();
});

const start = childServicesKilledAfterEach();



/**
 * Ages the temp areas' locks as they are once their processes have been dead for a while: a
 * process killed a moment ago looks alive until its lock goes stale (rolling-restart.test.ts
 * waits that out for real).
 */
function ageTempLocks(dataDir: string): void {
  const longAgo = new Date(Date.now() - OWNER_STALE_MS - 1_000);
  for (const name of fs.readdirSync(tempRoot(dataDir))) if (name.endsWith('.lock')) fs.utimesSync(path.join(tempRoot(dataDir), name), longAgo, longAgo);
}

describe('restarts and crashes', () => {
  it('keeps a scheduled poll across a crash (SIGKILL) and runs it after restart', async () => {
    const dataDir = await makeDataDir();
    // The poll is due an hour on: it cannot run before the kill, however slow the machine.
    const env = testEnvironment(storage.origin, dataDir, { POLL_INITIAL_DELAY: '1h', POLL_MAX_DELAY: '1h', POLL_MAX_WAIT: '4h' });
    const first = await start(env);
    await first.postWebhook({ type: 'CALL', whatsapp_call_id: 'RESTART-POLL', status: 'ACTIVE' });
    await first.postWebhook({ type: 'CALL', whatsapp_call_id: 'RESTART-POLL', status: 'ENDED', duration: 30 });
    await waitFor(() => first.logs().some((line) => line.call_id === 'RESTART-POLL' && line.msg.startsWith('[WaVoIP Poll] Waiting')), 'poll scheduled');
    await first.kill('SIGKILL');
    expect(storage.requests('/RESTART-POLL')).toBe(0);

    // The scheduled poll survived the crash; brought forward to now, the restarted service runs it.
    const db = await openTestDatabase(env);
    try {
      const job = await db.get<{ run_at: number | string }>('select run_at from fetch_jobs where call_id = ?', ['RESTART-POLL']);
      expect(Number(job?.run_at)).toBeGreaterThan(Date.now());
      await db.run('update fetch_jobs set run_at = ? where call_id = ?', [Date.now(), 'RESTART-POLL']);
    } finally {
      await db.close();
    }
    storage.setRoute('/RESTART-POLL', { kind: 'body', body: ogg, contentType: 'audio/ogg' });
    const second = await start(env);
    const call = await second.waitForAttachment('RESTART-POLL');
    expect(call.attachment).toMatchObject({ state: 'attached', sha256: sha256(ogg) });
  });

  it('leaves no partial file when killed mid-download, and downloads again after restart', async () => {
    const dataDir = await makeDataDir();
    const env = testEnvironment(storage.origin, dataDir, { JOB_LEASE: '1s' });
    storage.setRoute('/KILLED-MID-DOWNLOAD', { kind: 'stall-mid-body', body: wav, contentType: 'audio/wav' });
    const first = await start(env);
    await first.postWebhook({ type: 'RECORD', whatsapp_call_id: 'KILLED-MID-DOWNLOAD', record_status: 'READY', record_url: storage.url('/KILLED-MID-DOWNLOAD') });
    await waitFor(() => partialDownloads(dataDir).length === 1 && fs.statSync(partialDownloads(dataDir)[0] as string).size > 0, 'download in progress');
    await first.kill('SIGKILL');
    expect(partialDownloads(dataDir)).toHaveLength(1);
    ageTempLocks(dataDir);

    storage.setRoute('/KILLED-MID-DOWNLOAD', { kind: 'body', body: wav, contentType: 'audio/wav' });
    const second = await start(env);
    const call = await second.waitForAttachment('KILLED-MID-DOWNLOAD');
    expect(call.attachment).toMatchObject({ state: 'attached', size: wav.length, sha256: sha256(wav) });
    expect(partialDownloads(dataDir)).toEqual([]);
    expect(second.logs().some((line) => /partial download/.test(line.msg))).toBe(true);
  });

  it('processes events that were acknowledged but not yet applied when the process died', async () => {
    const dataDir = await makeDataDir();
    const env = testEnvironment(storage.origin, dataDir, NO_POLLING);
    const first = await start(env);
    expect((await first.postWebhook({ type: 'CALL', whatsapp_call_id: 'BEFORE-CRASH', status: 'ACTIVE' })).status).toBe(200);
    await first.waitForAttachment('BEFORE-CRASH', 'pending');
    await first.kill('SIGKILL');

    // As a crash between the commit and the processing leaves it: stored, acknowledged, unapplied.
    const db = await openTestDatabase(env);
    await db.run('insert into events (event_id, received_at, type, call_id, payload) values (?, ?, ?, ?, ?)', [
      'acknowledged-before-crash',
      Date.now(),
      'RECORD',
      'BEFORE-CRASH',
      JSON.stringify({ type: 'RECORD', whatsapp_call_id: 'BEFORE-CRASH', record_status: 'DISABLED' }),
    ]);
    await db.close();

    const second = await start(env);
    const call = await second.waitForAttachment('BEFORE-CRASH', 'disabled');
    expect(call.events.map((event) => event.event_id)).toContain('acknowledged-before-crash');
  });

  it('stops cleanly on SIGTERM with exit code 0', async () => {
    const service = await start(testEnvironment(storage.origin, await makeDataDir()));
    expect(await service.kill('SIGTERM')).toBe(0);
    expect(service.logs().some((line) => line.msg === 'Stopped')).toBe(true);
  });

  it('generates an API token on first start, keeps it in DATA_DIR and prints how to use it', async () => {
    const dataDir = await makeDataDir();
    const env = testEnvironment(storage.origin, dataDir, { API_TOKEN: '' });
    const first = await start(env);
    const token = fs.readFileSync(path.join(dataDir, 'api-token'), 'utf8').trim();
    expect(token.length).toBeGreaterThanOrEqual(32);
    expect((fs.statSync(path.join(dataDir, 'api-token')).mode & 0o777).toString(8)).toBe('600');
    const tokenFile = path.join(dataDir, 'api-token');
    // Logged just after the line the harness waits for: it may still be on its way.
    await waitFor(() => first.logs().some((line) => line.msg.includes(`Authorization: Bearer $(cat ${tokenFile})`)), 'the hint on how to use the token');
    expect(first.logs().some((line) => JSON.stringify(line).includes(token))).toBe(false);
    expect((await first.api('/api/calls', { token })).status).toBe(200);
    expect((await fetch(`${first.url}/api/calls`)).status).toBe(401);
    await first.kill('SIGTERM');

    const second = await start(env);
    expect((await second.api('/api/calls', { token })).status).toBe(200);
  });

  it('refuses to start on a bad setting, naming the variable', async () => {
    await expect(start(testEnvironment(storage.origin, await makeDataDir(), { POLL_MAX_WAIT: '4 hours' }))).rejects.toThrow(
      /POLL_MAX_WAIT/,
    );
  });
});
