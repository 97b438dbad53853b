import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { normalizeWebhookPayload } from '../../src/calls/webhook-event.ts';
import { toE164 } from '../../src/calls/phone-number.ts';
import { DEVICE_STATUSES, isDeviceSilent, normalizeDeviceStatus } from '../../src/devices/device-status.ts';

const payloads = JSON.parse(readFileSync(new URL('../fixtures/wavoip-payloads.json', import.meta.url), 'utf8')) as Record<string, unknown>;

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
    expect(toE164(normalized.event.phone)).toBe('+5566999050312');
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
