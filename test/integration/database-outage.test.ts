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
  async function startDownloadThatHangs(callId: string) {
    // Renewed every second; with no renewal through, stopped 300 ms (a tenth) before the lease runs out.
    const env = testEnvironment(storage.origin, await makeDataDir(), { ...NO_POLLING, DATABASE_URL: databaseUrl, JOB_LEASE: '3s' });
    const service = await startInProcessService(env);
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    storage.setRoute(`/${callId}`, { kind: 'held', until: released, then: { kind: 'body', body: ogg, contentType: 'audio/ogg' } });
    expect((await service.postWebhook({ type: 'RECORD', whatsapp_call_id: callId, record_status: 'READY' })).status).toBe(200);
    await waitFor(() => storage.requests(`/${callId}`) === 1, 'the download to start');
    // Stopped: said so, and the connection to the storage is gone.
    const interrupted = () =>
      service.logs().some((line) => line.call_id === callId && line.msg === `[WaVoIP Jobs] Fetch for call ${callId} interrupted (its lease could not be renewed); it will run again`) &&
      storage.abandoned(`/${callId}`) === 1;
    return { service, release, interrupted };
  }

  it('refused connections: stops the download before its lease can run out, answers 503 meanwhile, and downloads again once the database is back', async () => {
    const { service, release, interrupted } = await startDownloadThatHangs('OUTAGE');
    try {
      proxy.cut();
      await waitFor(interrupted, 'the download to be stopped');
      expect(service.logs().some((line) => line.level === 40 && line.msg === '[WaVoIP Jobs] Could not renew job leases')).toBe(true);
      // Nothing can be stored, so nothing is acknowledged: WaVoIP keeps the event and sends it again.
      const refused = await service.postWebhook({ type: 'RECORD', whatsapp_call_id: 'DURING-OUTAGE', record_status: 'MIXING' });
      expect(refused.status).toBe(503);
      expect(refused.headers.get('retry-after')).toBe('5');
      expect(await refused.json()).toEqual({ error: 'temporarily unable to use the database; try again later' });
      expect((await service.api('/api/calls/OUTAGE')).status).toBe(503);
      // The load balancer takes the replica out; the scrape still works, and says why.
      expect(await (await fetch(`${service.url}/readyz`)).json()).toMatchObject({ status: 'unavailable' });
      const metrics = await (await service.api('/metrics')).text();
      expect(metrics).toMatch(/^wavoip_recordings_database_up 0$/m);

      proxy.restore();
      release();
      expect((await service.waitForAttachment('OUTAGE', 'attached')).attachment.state).toBe('attached');
      expect(storage.requests('/OUTAGE')).toBe(2);
      // The first download was cut off, not finished and dropped.
      expect(storage.completed('/OUTAGE')).toBe(1);
      expect((await service.postWebhook({ type: 'RECORD', whatsapp_call_id: 'DURING-OUTAGE', record_status: 'MIXING' })).status).toBe(200);
    } finally {
      proxy.restore();
      await service.stop();
    }
  });

  it('a database that stops answering without an error: the download is stopped all the same, without waiting for the renewal, which does not come back', async () => {
    const { service, release, interrupted } = await startDownloadThatHangs('PARTITION');
    try {
      proxy.stall();
      await waitFor(interrupted, 'the download to be stopped');
      // Stopped before any renewal came back with an error: a connection may time out much later.
      const logs = service.logs();
      const stoppedAt = logs.findIndex((line) => line.call_id === 'PARTITION' && String(line.msg).includes('interrupted'));
      const failedRenewals = logs.slice(0, stoppedAt).filter((line) => line.msg === '[WaVoIP Jobs] Could not renew job leases');
      expect(failedRenewals).toEqual([]);

      proxy.restore();
      release();
      expect((await service.waitForAttachment('PARTITION', 'attached')).attachment.state).toBe('attached');
      expect(storage.requests('/PARTITION')).toBe(2);
      expect(storage.completed('/PARTITION')).toBe(1);
    } finally {
      proxy.restore();
      await service.stop();
    }
  });
});
