import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Clock } from '../../src/clock.ts';
import { startFakeWavoipStorage, type FakeWavoipStorage } from '../support/fake-wavoip-storage.ts';
import { makeDataDir, NO_POLLING, startInProcessService, testEnvironment, waitFor, type InProcessService } from '../support/service-harness.ts';
import { waitForEventsApplied } from '../support/test-database.ts';

/** Real time, moved by hand: the service reads every time from it (event receive times included). */
class MovedClock implements Clock {
  offsetMs = 0;
  now(): number {
    return Date.now() + this.offsetMs;
  }
}

interface DeviceView {
  id_session: string;
  phone: string | null;
  phone_raw: string | null;
  status: string;
  status_raw: string | null;
  status_changed_at: string | null;
  last_status_at: string | null;
  last_webhook_at: string;
  calls_last_24h: number;
  silent: boolean;
  tenant: string | null;
}

const HOUR_MS = 3_600_000;
let storage: FakeWavoipStorage;
let env: Record<string, string>;
let service: InProcessService;
const clock = new MovedClock();

beforeAll(async () => {
  storage = await startFakeWavoipStorage();
  // Checked every 3s (a tenth of it); the clock is moved past it rather than waited for.
  env = testEnvironment(storage.origin, await makeDataDir(), { ...NO_POLLING, WEBHOOK_SILENCE_WARNING: '30s' });
  service = await startInProcessService(env, { clock });
});
afterAll(async () => {
  await service?.stop();
  await storage?.close();
});

async function post(body: Record<string, unknown>): Promise<void> {
  const response = await service.postWebhook(body);
  expect(response.status).toBe(200);
  await waitForEventsApplied(env);
}

async function device(id: string): Promise<DeviceView> {
  const response = await service.api(`/api/devices/${encodeURIComponent(id)}`);
  expect(response.status).toBe(200);
  return (await response.json()) as DeviceView;
}

async function listDevices(query = ''): Promise<{ devices: DeviceView[]; next_cursor: string | null }> {
  const response = await service.api(`/api/devices${query}`);
  expect(response.status).toBe(200);
  return (await response.json()) as { devices: DeviceView[]; next_cursor: string | null };
}

const deviceEvent = (id: string, status: string, phone = '5566999050312') => ({ type: 'DEVICE', action: 'UPDATE', id_session: id, phone, status });
const iso = (ms: number) => new Date(ms).toISOString();

describe('GET /api/devices/:id', () => {
  it('shows the phone as E.164 and as sent, and the status normalised with the raw one', async () => {
    await post(deviceEvent('dev-phone', 'WAITING_PAYMENT'));
    const view = await device('dev-phone');
    expect(view).toMatchObject({
      id_session: 'dev-phone',
      phone: '+5566999050312',
      phone_raw: '5566999050312',
      status: 'payment_required',
      status_raw: 'WAITING_PAYMENT',
      calls_last_24h: 0,
      silent: false,
      tenant: null,
    });
    expect(view.status_changed_at).toBe(view.last_webhook_at);
  });

  it('moves the status change time when the status changes, not on a heartbeat repeating it, nor for an older event', async () => {
    clock.offsetMs = 0;
    const openedAt = clock.now();
    await post(deviceEvent('dev-change', 'open'));
    expect((await device('dev-change')).status).toBe('connected');

    clock.offsetMs = 60_000;
    await post(deviceEvent('dev-change', 'open'));
    let view = await device('dev-change');
    expect(Date.parse(view.status_changed_at!)).toBeGreaterThanOrEqual(openedAt);
    expect(Date.parse(view.status_changed_at!)).toBeLessThan(openedAt + 60_000);
    expect(Date.parse(view.last_webhook_at)).toBeGreaterThanOrEqual(openedAt + 60_000);

    clock.offsetMs = 120_000;
    const closedAt = clock.now();
    await post(deviceEvent('dev-change', 'close'));
    view = await device('dev-change');
    expect(view).toMatchObject({ status: 'disconnected', status_raw: 'close' });
    expect(Date.parse(view.status_changed_at!)).toBeGreaterThanOrEqual(closedAt);

    // An event received earlier than the close (replicas stamp their own receive times) changes nothing.
    clock.offsetMs = 90_000;
    await post(deviceEvent('dev-change', 'open'));
    const after = await device('dev-change');
    expect(after).toMatchObject({ status: 'disconnected', status_raw: 'close', status_changed_at: view.status_changed_at, last_webhook_at: view.last_webhook_at });
    clock.offsetMs = 0;
  });

  it('counts CALL and RECORD events as webhooks from their device, and its calls of the last 24 hours', async () => {
    clock.offsetMs = -25 * HOUR_MS;
    await post({ type: 'CALL', action: 'CREATE', whatsapp_call_id: 'DEV-OLD-CALL', id_session: 'dev-calls', caller: '5511911112222', receiver: '5511933334444', status: 'INCOMING_RING', direction: 'INCOMING' });
    clock.offsetMs = 0;
    await post(deviceEvent('dev-calls', 'open'));
    const statusAt = (await device('dev-calls')).last_status_at;

    clock.offsetMs = 1_000;
    await post({ type: 'CALL', action: 'CREATE', whatsapp_call_id: 'DEV-CALL-1', id_session: 'dev-calls', status: 'INCOMING_RING', direction: 'INCOMING' });
    clock.offsetMs = 2_000;
    await post({ type: 'CALL', action: 'CREATE', whatsapp_call_id: 'DEV-CALL-2', id_session: 'dev-calls', status: 'OUTGOING_RING', direction: 'OUTCOMING' });
    clock.offsetMs = 3_000;
    const recordAt = clock.now();
    await post({ type: 'RECORD', action: 'UPDATE', whatsapp_call_id: 'DEV-CALL-1', id_session: 'dev-calls', record_status: 'RECORDING' });
    clock.offsetMs = 0;

    const view = await device('dev-calls');
    expect(view.calls_last_24h).toBe(2);
    expect(Date.parse(view.last_webhook_at)).toBeGreaterThanOrEqual(recordAt);
    // Only DEVICE events report a status.
    expect(view).toMatchObject({ status: 'connected', last_status_at: statusAt });
  });

  it('knows a device heard from only through its calls, with an unknown status', async () => {
    await post({ type: 'CALL', action: 'CREATE', whatsapp_call_id: 'DEV-ONLY-CALLS', id_session: 'dev-no-device-events', status: 'INCOMING_RING' });
    expect(await device('dev-no-device-events')).toMatchObject({ status: 'unknown', status_raw: null, phone: null, status_changed_at: null, calls_last_24h: 1 });
  });

  it('answers 404 naming an unknown device, and 404 (not 500) for a NUL in the id', async () => {
    const response = await service.api('/api/devices/no-such-device');
    expect(response.status).toBe(404);
    expect(((await response.json()) as { error: string }).error).toBe('no device with id_session "no-such-device"');
    expect((await service.api('/api/devices/%00')).status).toBe(404);
  });

  it('needs the API token', async () => {
    expect((await service.api('/api/devices', { token: 'wrong-token-123' })).status).toBe(401);
    expect((await service.api('/api/devices/dev-phone', { token: 'wrong-token-123' })).status).toBe(401);
  });
});

describe('GET /api/devices', () => {
  it('lists devices by id, a page at a time, with the same view as one device', async () => {
    const first = await listDevices('?limit=2');
    expect(first.devices).toHaveLength(2);
    expect(first.next_cursor).not.toBeNull();
    const rest = await listDevices(`?limit=500&cursor=${first.next_cursor}`);
    const ids = [...first.devices, ...rest.devices].map((view) => view.id_session);
    expect(ids).toEqual([...ids].sort());
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids).toEqual(expect.arrayContaining(['dev-calls', 'dev-change', 'dev-phone']));
    expect([...first.devices, ...rest.devices].find((view) => view.id_session === 'dev-calls')).toEqual(await device('dev-calls'));
  });

  it('filters by status', async () => {
    const disconnected = await listDevices('?status=disconnected');
    expect(disconnected.devices.map((view) => view.id_session)).toEqual(['dev-change']);
    const unknown = await listDevices('?status=unknown');
    expect(unknown.devices.map((view) => view.id_session)).toEqual(['dev-no-device-events']);
  });

  it.each([
    ['?status=online', 'status'],
    ['?silent=yes', 'silent'],
    ['?limit=0', 'limit'],
    ['?limit=501', 'limit'],
    ['?cursor=%00', 'cursor'],
    ['?tenant=%20bad', 'tenant'],
    ['?colour=red', 'colour'],
  ])('refuses %s with 400 naming the field', async (query, field) => {
    const response = await service.api(`/api/devices${query}`);
    expect(response.status).toBe(400);
    expect(((await response.json()) as { field?: string }).field).toBe(field);
  });
});

describe('a device that goes quiet for WEBHOOK_SILENCE_WARNING', () => {
  const deviceWarnings = (id: string) => service.logs().filter((line) => line.msg.startsWith('[WaVoIP Webhook] Device ') && line.device_id === id);

  it('is named in the log once per silence period, shown as silent, and in the per-device metric', async () => {
    clock.offsetMs = 0;
    await post(deviceEvent('dev-quiet', 'open', '5511955556666'));
    expect((await device('dev-quiet')).silent).toBe(false);
    clock.offsetMs = 15_000;
    await post(deviceEvent('dev-quiet-later', 'open'));

    // 35s on, only dev-loud has been heard from: dev-quiet has been quiet for 30s or more.
    clock.offsetMs = 35_000;
    await post(deviceEvent('dev-loud', 'open', '5511977778888'));
    await waitFor(() => deviceWarnings('dev-quiet').length > 0, 'a silence warning naming dev-quiet');
    const [warning] = deviceWarnings('dev-quiet');
    expect(warning!.level).toBe(40);
    expect(warning!.msg).toMatch(/^\[WaVoIP Webhook\] Device dev-quiet \(\+5511955556666\) has sent no webhook for 30s \(since \S+\)\./);
    expect(warning!.phone).toBe('+5511955556666');
    expect(deviceWarnings('dev-loud')).toEqual([]);
    expect(deviceWarnings('dev-quiet-later')).toEqual([]);

    expect(await device('dev-quiet')).toMatchObject({ silent: true });
    expect(await device('dev-loud')).toMatchObject({ silent: false });
    const silent = (await listDevices('?silent=true&limit=500')).devices.map((view) => view.id_session);
    expect(silent).toContain('dev-quiet');
    expect(silent).not.toContain('dev-loud');
    expect((await listDevices('?silent=false&limit=500')).devices.map((view) => view.id_session)).toContain('dev-loud');

    const metrics = await (await service.api('/metrics')).text();
    const quietSeconds = Number(/^wavoip_recordings_device_seconds_since_last_webhook\{device="dev-quiet",tenant=""\} (\S+)$/m.exec(metrics)?.[1]);
    expect(quietSeconds).toBeGreaterThanOrEqual(30);
    expect(metrics).not.toMatch(/device_seconds_since_last_webhook\{device="dev-loud"/);
    expect(Number(/^wavoip_recordings_devices_silent (\S+)$/m.exec(metrics)?.[1])).toBeGreaterThanOrEqual(silent.length);

    // dev-quiet-later goes silent while dev-quiet is still in its first period: warned of once only.
    clock.offsetMs = 50_000;
    await post(deviceEvent('dev-loud', 'open', '5511977778888'));
    await waitFor(() => deviceWarnings('dev-quiet-later').length > 0, 'a silence warning naming dev-quiet-later');
    expect(deviceWarnings('dev-quiet')).toHaveLength(1);

    // A second period: warned of again.
    clock.offsetMs = 75_000;
    await post(deviceEvent('dev-loud', 'open', '5511977778888'));
    await waitFor(() => deviceWarnings('dev-quiet').length > 1, 'a second warning for dev-quiet');
    expect(deviceWarnings('dev-quiet')[1]!.msg).toContain('has sent no webhook for 1m');
  });

  it('is heard from again: no longer silent, and its series goes', async () => {
    await post(deviceEvent('dev-quiet', 'open', '5511955556666'));
    expect((await device('dev-quiet')).silent).toBe(false);
    const metrics = await (await service.api('/metrics')).text();
    expect(metrics).not.toMatch(/device_seconds_since_last_webhook\{device="dev-quiet"/);
  });
});
