import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeWavoipStorage, type FakeWavoipStorage } from '../support/fake-wavoip-storage.ts';
import { makeDataDir, startInProcessService, testEnvironment, waitFor, type InProcessService } from '../support/service-harness.ts';

const ogg = fs.readFileSync(new URL('../fixtures/audio/call-pt-br-9s.ogg', import.meta.url));

let storage: FakeWavoipStorage;
let service: InProcessService;

beforeAll(async () => {
  storage = await startFakeWavoipStorage();
  service = await startInProcessService(testEnvironment(storage.origin, await makeDataDir(), { EVENT_RETENTION: '2s' }));
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

    const db = new Database(path.join(service.dataDir, 'wavoip-recordings.sqlite'), { readonly: true });
    try {
      const count = (table: string) => (db.prepare(`select count(*) as n from ${table}`).get() as { n: number }).n;
      await waitFor(() => count('events') === 0 && count('devices') === 0, 'events and devices pruned', 20_000);
    } finally {
      db.close();
    }
    const call = await service.call('KEPT');
    expect(call.events).toEqual([]);
    expect(call.attachment).toMatchObject({ state: 'attached', size: ogg.length });
    expect((await service.api('/api/calls/KEPT/recording')).status).toBe(200);
    expect(service.logs().some((line) => line.msg.startsWith('[Retention] Pruned'))).toBe(true);
  });
});
