import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeWavoipStorage, type FakeWavoipStorage } from '../support/fake-wavoip-storage.ts';
import { makeDataDir, NO_POLLING, startInProcessService, testEnvironment, waitFor } from '../support/service-harness.ts';
import { startTcpProxy, type TcpProxy } from '../support/tcp-proxy.ts';
import { databaseEnvironment, testDialect } from '../support/test-database.ts';

/**
 * PostgreSQL out of reach while a download runs. The replica cannot renew its lease, so another
 * replica may take the job over once the lease runs out: this one must stop downloading before
 * that, or the recording would be downloaded twice. (SQLite is a file: it has no such outage.)
 */
const ogg = fs.readFileSync(new URL('../fixtures/audio/call-pt-br-9s.ogg', import.meta.url));

let storage: FakeWavoipStorage;
let proxy: TcpProxy;
let databaseUrl: string;

beforeAll(async () => {
  storage = await startFakeWavoipStorage();
  if (testDialect !== 'postgres') return;
  const direct = new URL(databaseEnvironment().DATABASE_URL!);
  proxy = await startTcpProxy({ host: direct.hostname, port: Number(direct.port || 5432) });
  direct.port = String(proxy.port);
  databaseUrl = direct.toString();
});
afterAll(async () => {
  await proxy?.close();
  await storage?.close();
});

describe.skipIf(testDialect !== 'postgres')('the database out of reach mid-download', () => {
  it('stops the download before its lease can run out, refuses webhooks meanwhile, and downloads again once the database is back', async () => {
    // Renewed every second; given up after two seconds without a renewal.
    const env = testEnvironment(storage.origin, await makeDataDir(), { ...NO_POLLING, DATABASE_URL: databaseUrl, JOB_LEASE: '3s' });
    const service = await startInProcessService(env);
    try {
      let release!: () => void;
      const released = new Promise<void>((resolve) => (release = resolve));
      storage.setRoute('/OUTAGE', { kind: 'held', until: released, then: { kind: 'body', body: ogg, contentType: 'audio/ogg' } });
      expect((await service.postWebhook({ type: 'RECORD', whatsapp_call_id: 'OUTAGE', record_status: 'READY' })).status).toBe(200);
      await waitFor(() => storage.requests('/OUTAGE') === 1, 'the download to start');

      proxy.cut();
      await waitFor(
        () => service.logs().some((line) => line.call_id === 'OUTAGE' && line.msg === '[WaVoIP Jobs] Fetch for call OUTAGE interrupted (its lease could not be renewed); it will run again'),
        'the download to be stopped',
      );
      expect(service.logs().some((line) => line.level === 40 && line.msg === '[WaVoIP Jobs] Could not renew job leases')).toBe(true);
      // Nothing can be stored, so nothing is acknowledged: WaVoIP keeps the event and sends it again.
      const refused = await service.postWebhook({ type: 'RECORD', whatsapp_call_id: 'DURING-OUTAGE', record_status: 'MIXING' });
      expect(refused.status).toBe(503);
      expect(refused.headers.get('retry-after')).toBe('5');
      expect(await refused.json()).toEqual({ error: 'temporarily unavailable: the database or the recordings storage is failing; try again later' });
      const api = await service.api('/api/calls/OUTAGE');
      expect(api.status).toBe(503);

      proxy.restore();
      release();
      const call = await service.waitForAttachment('OUTAGE', 'attached');
      expect(call.attachment.state).toBe('attached');
      expect(storage.requests('/OUTAGE')).toBe(2);
      // The first response never reached its end: the download was cut off, not finished and dropped.
      expect(storage.completed('/OUTAGE')).toBe(1);
      expect((await service.postWebhook({ type: 'RECORD', whatsapp_call_id: 'DURING-OUTAGE', record_status: 'MIXING' })).status).toBe(200);
    } finally {
      proxy.restore();
      await service.stop();
    }
  });
});
