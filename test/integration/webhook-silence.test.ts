import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeWavoipStorage, type FakeWavoipStorage } from '../support/fake-wavoip-storage.ts';
import { makeDataDir, startInProcessService, testEnvironment, waitFor, type InProcessService } from '../support/service-harness.ts';

let storage: FakeWavoipStorage;
let service: InProcessService;

beforeAll(async () => {
  storage = await startFakeWavoipStorage();
  service = await startInProcessService(testEnvironment(storage.origin, await makeDataDir(), { WEBHOOK_SILENCE_WARNING: '1s' }));
});
afterAll(async () => {
  await service?.stop();
  await storage?.close();
});

const silenceWarnings = () => service.logs().filter((line) => line.msg.startsWith('[WaVoIP Webhook] No webhook has arrived'));

describe('WEBHOOK_SILENCE_WARNING', () => {
  it('warns, with what to check, when no webhook has come since start-up', async () => {
    await waitFor(() => silenceWarnings().length > 0, 'a silence warning');
    const [warning] = silenceWarnings();
    expect(warning!.level).toBe(40);
    expect(warning!.msg).toMatch(/^\[WaVoIP Webhook\] No webhook has arrived for \d+s \(none has ever arrived; counting from start-up\)\./);
    expect(warning!.msg).toContain("check that each device's WaVoIP panel sends its webhook to https://your-host/webhooks/wavoip?token=<WEBHOOK_TOKEN>");
    expect(warning!.last_webhook_at).toBeNull();
  });

  it('counts from the last webhook once one arrives, and says when that was', async () => {
    const sentAt = Date.now();
    expect((await service.postWebhook({ type: 'DEVICE', action: 'UPDATE', id_session: 7, status: 'open' })).status).toBe(200);
    await waitFor(() => silenceWarnings().some((line) => line.last_webhook_at !== null), 'a warning counted from the webhook');
    const warning = silenceWarnings().find((line) => line.last_webhook_at !== null)!;
    expect(Date.parse(String(warning.last_webhook_at))).toBeGreaterThanOrEqual(sentAt - 1_000);
    expect(warning.msg).toContain(`since ${String(warning.last_webhook_at)}`);
  });

  it('exposes the silence as a metric, counted from the last webhook', async () => {
    const before = Date.now();
    await service.postWebhook({ type: 'DEVICE', action: 'UPDATE', id_session: 8, status: 'open' });
    const text = await (await service.api('/metrics')).text();
    const seconds = Number(/^wavoip_recordings_seconds_since_last_webhook (\S+)$/m.exec(text)?.[1]);
    expect(seconds).toBeGreaterThanOrEqual(0);
    expect(seconds).toBeLessThanOrEqual((Date.now() - before) / 1000);
  });

  it('keeps counting across a restart: the last webhook is read from the database', async () => {
    const env = testEnvironment(storage.origin, await makeDataDir(), { WEBHOOK_SILENCE_WARNING: '1s' });
    const first = await startInProcessService(env);
    await first.postWebhook({ type: 'DEVICE', action: 'UPDATE', id_session: 9, status: 'open' });
    const sentAt = Date.now();
    await first.stop();
    const second = await startInProcessService(env);
    try {
      await waitFor(() => second.logs().some((line) => line.msg.startsWith('[WaVoIP Webhook] No webhook has arrived')), 'a warning after the restart');
      const warning = second.logs().find((line) => line.msg.startsWith('[WaVoIP Webhook] No webhook has arrived'))!;
      expect(warning.last_webhook_at).not.toBeNull();
      expect(Date.parse(String(warning.last_webhook_at))).toBeLessThanOrEqual(sentAt);
    } finally {
      await second.stop();
    }
  });
});
