import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { normalizeWebhookPayload } from '../../../src/calls/webhook-event.ts';
import { DEVICE_STATUSES, isDeviceSilent, normalizeDeviceStatus, phoneToE164 } from '../../../src/devices/device-status.ts';

const payloads = JSON.parse(readFileSync(new URL('../../fixtures/wavoip-payloads.json', import.meta.url), 'utf8')) as Record<string, unknown>;

describe('normalizeDeviceStatus', () => {
  it.each([
    // WaVoIP's documented DEVICE statuses, as documented
    ['BUILDING', 'building'],
    ['open', 'connected'],
    ['close', 'disconnected'],
    ['connecting', 'connecting'],
    ['no_status', 'unknown'],
    ['error', 'error'],
    ['restarting', 'restarting'],
    ['hibernating', 'hibernating'],
    ['WAITING_PAYMENT', 'payment_required'],
    // the names WaVoIP announced in place of open/close
    ['connected', 'connected'],
    ['disconnected', 'disconnected'],
    ['closed', 'disconnected'],
    // any case, surrounding space
    ['OPEN', 'connected'],
    ['Close', 'disconnected'],
    ['building', 'building'],
    ['waiting_payment', 'payment_required'],
    [' open ', 'connected'],
    // unseen values and no status
    ['NO_STATUS', 'unknown'],
    ['paused', 'unknown'],
    ['', 'unknown'],
    [null, 'unknown'],
  ] as const)('%j → %s', (raw, expected) => {
    expect(normalizeDeviceStatus(raw)).toBe(expected);
  });

  it('gives only the statuses the API lists', () => {
    for (const raw of ['open', 'close', 'x', null, 'WAITING_PAYMENT']) expect(DEVICE_STATUSES).toContain(normalizeDeviceStatus(raw));
  });

  it("reads the fixture's DEVICE payload as a connected device", () => {
    const normalized = normalizeWebhookPayload(payloads.device_update);
    if (!normalized.ok || normalized.event.type !== 'DEVICE') throw new Error('not a DEVICE event');
    expect(normalizeDeviceStatus(normalized.event.status)).toBe('connected');
    expect(phoneToE164(normalized.event.phone)).toBe('+5566999050312');
  });
});

describe('phoneToE164', () => {
  it.each([
    ['5566999050312', '+5566999050312'],
    ['556692341814', '+556692341814'],
    ['+55 66 99905-0312', '+5566999050312'],
    ['+1 (415) 555-0100', '+14155550100'],
    ['005566999050312', '+5566999050312'],
    ['12345678', '+12345678'],
    ['1234567', null],
    ['1234567890123456', null],
    ['0566999050312', null],
    ['55669990503ab', null],
    ['', null],
    [null, null],
  ] as const)('%j → %j', (raw, expected) => {
    expect(phoneToE164(raw)).toBe(expected);
  });
});

describe('isDeviceSilent', () => {
  it.each([
    [0, 999, 1000, false],
    [0, 1000, 1000, true],
    [0, 5000, 1000, true],
  ] as const)('last webhook at %i, now %i, threshold %i → %s', (last, now, threshold, expected) => {
    expect(isDeviceSilent(last, now, threshold)).toBe(expected);
  });
});
