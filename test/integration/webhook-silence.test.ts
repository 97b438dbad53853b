import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Clock } from '../../src/clock.ts';
import { startFakeWavoipStorage, type FakeWavoipStorage } from '../support/fake-wavoip-storage.ts';
import { makeDataDir, startInProcessService, testEnvironment, waitFor, type InProcessService } from '../support/service-harness.ts';

/** Real time, moved by hand: the service reads every time from it (event receive times included). */
class MovedClock implements Clock {
  offsetMs = 0;
  now(): number {
    return Date.now() + this.offsetMs;
  }
}

/** Checked every second (a tenth of it, at least 1s); the clock is moved past it rather than waited for. */
const SILENCE = { WEBHOOK_SILENCE_WARNING: '10s' };
const SILENCE_MS = 10_000;
const WARNING = '[WaVoIP Webhook] No webhook has arrived';

let storage: FakeWavoipStorage;

beforeAll(async () => {
  storage = await startFakeWavoipStorage();
});
afterAll(async () => {
  await storage?.close();
});

const silenceWarnings = (of: InProcessService) => of.logs().filter((line) => line.msg.startsWith(WARNING));

/** A service of its own on a clock of its own, so that no test depends on what another did to either. */
async function withService(test: (service: InProcessService, clock: MovedClock) => Promise<void>): Promise<void> {
  const clock = new MovedClock();
  const service = await startInProcessService(testEnvironment(storage.origin, await makeDataDir(), SILENCE), { clock });
  try {
    await test(service, clock);
  } finally {
    await service.stop();
  }
}

describe('WEBHOOK_SILENCE_WARNING', () => {
  it('warns, with what to check, when no webhook has come since start-up', () =>
    withService(async (service, clock) => {
      expect(silenceWarnings(service)).toEqual([]);
      clock.offsetMs += SILENCE_MS;
      await waitFor(() => silenceWarnings(service).length > 0, 'a silence warning');
      const [warning] = silenceWarnings(service);
      expect(warning!.level).toBe(40);
      // Only once the whole period has passed, not at the first check after start-up.
      expect(warning!.silent_for_ms).toBeGreaterThanOrEqual(SILENCE_MS);
      expect(warning!.msg).toMatch(/^\[WaVoIP Webhook\] No webhook has arrived for 10s \(none has ever arrived; counting from start-up\)\./);
      expect(warning!.msg).toContain("check that each device's WaVoIP panel sends its webhook to https://your-host/webhooks/wavoip?token=<WEBHOOK_TOKEN>");
      expect(warning!.last_webhook_at).toBeNull();
    }));

  it('counts from the last webhook once one arrives, and says when that was', () =>
    withService(async (service, clock) => {
      // Started a period and a half ago: counted from start-up, the silence would be 25s, not 10s.
      clock.offsetMs += SILENCE_MS * 1.5;
      const before = clock.now();
      expect((await service.postWebhook({ type: 'DEVICE', action: 'UPDATE', id_session: 7, status: 'open' })).status).toBe(200);
      const after = clock.now();
      clock.offsetMs += SILENCE_MS;
      await waitFor(() => silenceWarnings(service).some((line) => line.last_webhook_at !== null), 'a warning counted from the webhook');
      const warning = silenceWarnings(service).find((line) => line.last_webhook_at !== null)!;
      const lastWebhookAt = Date.parse(String(warning.last_webhook_at));
      expect(lastWebhookAt).toBeGreaterThanOrEqual(before);
      expect(lastWebhookAt).toBeLessThanOrEqual(after);
      expect(warning.silent_for_ms).toBeGreaterThanOrEqual(SILENCE_MS);
      expect(warning.silent_for_ms).toBeLessThan(SILENCE_MS * 1.5);
      expect(warning.msg).toContain(`No webhook has arrived for 10s (since ${String(warning.last_webhook_at)})`);
    }));

  it('exposes the silence as a metric, counted from the last webhook', () =>
    withService(async (service, clock) => {
      const before = clock.now();
      expect((await service.postWebhook({ type: 'DEVICE', action: 'UPDATE', id_session: 8, status: 'open' })).status).toBe(200);
      clock.offsetMs += 42_000;
      const text = await (await service.api('/metrics')).text();
      const readAt = clock.now();
      const seconds = Number(/^wavoip_recordings_seconds_since_last_webhook (\S+)$/m.exec(text)?.[1]);
      // At least the 42 s the clock was moved, and no more than it moved in all since the webhook.
      expect(seconds).toBeGreaterThanOrEqual(42);
      expect(seconds).toBeLessThanOrEqual((readAt - before) / 1000);
    }));

  it('keeps counting across a restart: the last webhook is read from the database', async () => {
    const env = testEnvironment(storage.origin, await makeDataDir(), SILENCE);
    const restartClock = new MovedClock();
    const first = await startInProcessService(env, { clock: restartClock });
    const sentAt = restartClock.now();
    expect((await first.postWebhook({ type: 'DEVICE', action: 'UPDATE', id_session: 9, status: 'open' })).status).toBe(200);
    await first.stop();
    // The restarted service starts a period and a half after the webhook: counted from its own
    // start-up it would have nothing to say yet, and would say 10s of silence a period later.
    restartClock.offsetMs += SILENCE_MS * 1.5;
    const second = await startInProcessService(env, { clock: restartClock });
    try {
      await waitFor(() => silenceWarnings(second).length > 0, 'a warning after the restart');
      const [warning] = silenceWarnings(second);
      expect(warning!.last_webhook_at).not.toBeNull();
      expect(Date.parse(String(warning!.last_webhook_at))).toBeGreaterThanOrEqual(sentAt);
      expect(warning!.silent_for_ms).toBeGreaterThanOrEqual(SILENCE_MS * 1.5);
      expect(warning!.msg).toContain(`No webhook has arrived for 10s (since ${String(warning!.last_webhook_at)})`);
    } finally {
      await second.stop();
    }
  });
});
