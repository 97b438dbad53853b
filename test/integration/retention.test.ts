import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Clock } from '../../src/clock.ts';
import { startFakeWavoipStorage, type FakeWavoipStorage } from '../support/fake-wavoip-storage.ts';
import { makeDataDir, startInProcessService, testEnvironment, waitFor, type InProcessService } from '../support/service-harness.ts';
import { openTestDatabase, waitForEventsApplied } from '../support/test-database.ts';
import { sha256 } from '../support/sha256.ts';

const ogg = fs.readFileSync(new URL('../fixtures/audio/call-pt-br-9s.ogg', import.meta.url));

/** Real time, moved by hand: the service reads every time from it (receive and attach times included). */
class MovedClock implements Clock {
  offsetMs = 0;
  now(): number {
    return Date.now() + this.offsetMs;
  }
}

/**
 * Retention runs every tenth of the shortest retention (at least every second): 30s keeps the
 * wait for the next run short, and the clock is moved past the retention rather than waited for.
 */
const RETENTION = '30s';
const RETENTION_MS = 30_000;

let storage: FakeWavoipStorage;
let service: InProcessService;
let env: Record<string, string>;
const clock = new MovedClock();

beforeAll(async () => {
  storage = await startFakeWavoipStorage();
  env = testEnvironment(storage.origin, await makeDataDir(), { EVENT_RETENTION: RETENTION });
  service = await startInProcessService(env, { clock });
});
afterAll(async () => {
  await service?.stop();
  await storage?.close();
});

describe('EVENT_RETENTION', () => {
  it('prunes old events and silent devices, and keeps the call, its attachment and its recording', async () => {
    storage.setRoute('/KEPT', { kind: 'body', body: ogg, contentType: 'audio/ogg' });
    await service.postWebhook({ type: 'DEVICE', action: 'UPDATE', id_session: 5150, phone: '5511900000000', status: 'open' });
    await service.postWebhook({ type: 'RECORD', whatsapp_call_id: 'KEPT', record_status: 'READY', record_url: storage.url('/KEPT') });
    expect((await service.waitForAttachment('KEPT')).events).toHaveLength(1);

    const db = await openTestDatabase(env);
    try {
      const count = async (table: string) => (await db.get<{ n: number }>(`select count(*) as n from ${table}`))?.n;
      expect({ events: await count('events'), devices: await count('devices') }).toEqual({ events: 2, devices: 1 });
      clock.offsetMs += RETENTION_MS + 1_000;
      await waitFor(async () => (await count('events')) === 0 && (await count('devices')) === 0, 'events and devices pruned');
    } finally {
      await db.close();
    }
    const call = await service.call('KEPT');
    expect(call.events).toEqual([]);
    expect(call.attachment).toMatchObject({ state: 'attached', size: ogg.length });
    expect((await service.api('/api/calls/KEPT/recording')).status).toBe(200);
    expect(service.logs().some((line) => line.msg.startsWith('[Retention] Pruned'))).toBe(true);
  });
});

describe('RECORDING_RETENTION', () => {
  it('is unset by default: a recording outlives EVENT_RETENTION', async () => {
    storage.setRoute('/KEPT-UNSET', { kind: 'body', body: ogg, contentType: 'audio/ogg' });
    await service.postWebhook({ type: 'RECORD', whatsapp_call_id: 'KEPT-UNSET', record_status: 'READY', record_url: storage.url('/KEPT-UNSET') });
    await service.waitForAttachment('KEPT-UNSET', 'attached');
    const runsBefore = service.logs().filter((line) => line.msg.startsWith('[Retention] Pruned')).length;
    clock.offsetMs += RETENTION_MS + 1_000;
    // A retention run after the clock moved: the event went, the recording stays.
    await waitFor(() => service.logs().filter((line) => line.msg.startsWith('[Retention] Pruned')).length > runsBefore, 'a retention run');
    const call = await service.call('KEPT-UNSET');
    expect(call.events).toEqual([]);
    expect(call.attachment).toMatchObject({ state: 'attached', size: ogg.length });
    expect((await service.api('/api/calls/KEPT-UNSET/recording')).status).toBe(200);
  });

  it('deletes recordings attached longer ago, marks their calls expired and answers 410 for the audio', async () => {
    const dataDir = await makeDataDir();
    const expiringEnv = testEnvironment(storage.origin, dataDir, { RECORDING_RETENTION: RETENTION });
    const expiringClock = new MovedClock();
    const expiring = await startInProcessService(expiringEnv, { clock: expiringClock });
    try {
      storage.setRoute('/EXPIRES', { kind: 'body', body: ogg, contentType: 'audio/ogg' });
      await expiring.postWebhook({ type: 'RECORD', whatsapp_call_id: 'EXPIRES', record_status: 'READY', record_url: storage.url('/EXPIRES') });
      await expiring.waitForAttachment('EXPIRES', 'attached');
      const recordingsDir = path.join(dataDir, 'recordings');
      const files = () => fs.readdirSync(recordingsDir).filter((name) => !name.startsWith('.'));
      expect(files()).toHaveLength(1);

      expiringClock.offsetMs += RETENTION_MS + 1_000;
      const expired = await expiring.waitForAttachment('EXPIRES', 'expired');
      expect(expired.attachment).toMatchObject({
        state: 'expired',
        reason: `recording deleted after RECORDING_RETENTION (${RETENTION})`,
        url: null,
        size: ogg.length,
        sha256: sha256(ogg),
        content_type: 'audio/ogg',
      });
      expect(expired.attachment.attached_at).not.toBeNull();
      expect(files()).toEqual([]);
      const audio = await expiring.api('/api/calls/EXPIRES/recording');
      expect(audio.status).toBe(410);
      expect(((await audio.json()) as { error: string }).error).toContain('RECORDING_RETENTION');
      expect(expiring.logs().some((line) => line.msg === `[Retention] Deleted 1 recordings attached more than ${RETENTION} ago`)).toBe(true);

      // A late duplicate READY does not bring the deleted recording back.
      await expiring.postWebhook({ type: 'RECORD', whatsapp_call_id: 'EXPIRES', record_status: 'READY', record_url: storage.url('/EXPIRES') });
      await waitFor(async () => (await expiring.call('EXPIRES')).events.length === 2, 'the duplicate stored');
      await waitForEventsApplied(expiringEnv);
      expect((await expiring.call('EXPIRES')).attachment.state).toBe('expired');
      expect(storage.requests('/EXPIRES')).toBe(1);
      expect(files()).toEqual([]);
    } finally {
      await expiring.stop();
    }
  });
});
