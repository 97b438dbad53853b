import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeWavoipStorage, type FakeWavoipStorage } from '../support/fake-wavoip-storage.ts';
import { makeDataDir, startInProcessService, testEnvironment, waitFor, type InProcessService } from '../support/service-harness.ts';
import { openTestDatabase, waitForEventsApplied } from '../support/test-database.ts';
import { sha256 } from '../support/sha256.ts';

const ogg = fs.readFileSync(new URL('../fixtures/audio/call-pt-br-9s.ogg', import.meta.url));

let storage: FakeWavoipStorage;
let service: InProcessService;
let env: Record<string, string>;

beforeAll(async () => {
  storage = await startFakeWavoipStorage();
  env = testEnvironment(storage.origin, await makeDataDir(), { EVENT_RETENTION: '2s' });
  service = await startInProcessService(env);
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
      await waitFor(async () => (await count('events')) === 0 && (await count('devices')) === 0, 'events and devices pruned', 20_000);
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
  it('is unset by default: the recording above outlived EVENT_RETENTION', async () => {
    expect((await service.call('KEPT')).attachment.state).toBe('attached');
  });

  it('deletes recordings attached longer ago, marks their calls expired and answers 410 for the audio', async () => {
    const dataDir = await makeDataDir();
    const expiringEnv = testEnvironment(storage.origin, dataDir, { RECORDING_RETENTION: '2s' });
    const expiring = await startInProcessService(expiringEnv);
    try {
      storage.setRoute('/EXPIRES', { kind: 'body', body: ogg, contentType: 'audio/ogg' });
      await expiring.postWebhook({ type: 'RECORD', whatsapp_call_id: 'EXPIRES', record_status: 'READY', record_url: storage.url('/EXPIRES') });
      await expiring.waitForAttachment('EXPIRES', 'attached');
      const recordingsDir = path.join(dataDir, 'recordings');
      const files = () => fs.readdirSync(recordingsDir).filter((name) => !name.startsWith('.'));
      expect(files()).toHaveLength(1);

      const expired = await expiring.waitForAttachment('EXPIRES', 'expired');
      expect(expired.attachment).toMatchObject({
        state: 'expired',
        reason: 'recording deleted after RECORDING_RETENTION (2s)',
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
      expect(expiring.logs().some((line) => line.msg === '[Retention] Deleted 1 recordings attached more than 2s ago')).toBe(true);

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
