import { describe, expect, it } from 'vitest';
import { normalizeWebhookPayload, type CallEvent, type WebhookEvent } from '../../src/calls/webhook-event.ts';

function accept(body: unknown): WebhookEvent {
  const result = normalizeWebhookPayload(body);
  if (!result.ok) throw new Error(`expected acceptance, got ${result.field}: ${result.error}`);
  return result.event;
}

function acceptCall(fields: Record<string, unknown>): CallEvent {
  const event = accept({ type: 'CALL', whatsapp_call_id: 'c1', ...fields });
  if (event.type !== 'CALL') throw new Error(`expected a CALL, got ${event.type}`);
  return event;
}

describe('normalizeWebhookPayload: optional CALL fields', () => {
  // Wrong types are read as absent, never refused: the raw payload is kept anyway.
  it.each<[string, unknown, string | null]>([
    ['digits', '5511911112222', '5511911112222'],
    ['padded', '  5511911112222 ', '5511911112222'],
    ['a number', 5511911112222, '5511911112222'],
    ['empty', '', null],
    ['blank', '   ', null],
    ['true', true, null],
    ['false', false, null],
    ['an object', { number: '5511' }, null],
    ['an array', ['5511'], null],
    ['null', null, null],
  ])('reads caller and receiver given as %s', (_name, value, expected) => {
    const event = acceptCall({ caller: value, receiver: value });
    expect(event.caller).toBe(expected);
    expect(event.receiver).toBe(expected);
  });

  it.each<[string, unknown, number | null]>([
    ['an integer', 45, 45],
    ['zero', 0, 0],
    ['a fraction', 12.5, 12.5],
    ['digits', '45', 45],
    ['padded digits', ' 45 ', 45],
    ['decimal text', '45.5', 45.5],
    ['negative', -1, null],
    ['negative text', '-5', null],
    ['words', 'forty', null],
    ['empty text', '', null],
    ['exponent text', '1e3', null],
    ['true', true, null],
    ['an object', { seconds: 45 }, null],
    ['an array', [45], null],
    ['null', null, null],
  ])('reads duration given as %s', (_name, value, expected) => {
    expect(acceptCall({ duration: value }).duration).toBe(expected);
  });

  it.each<[string, unknown, string | null]>([
    ['a number', 789, '789'],
    ['text', '789', '789'],
    ['padded text', ' 789 ', '789'],
    ['a boolean', true, null],
    ['an object', { id: 789 }, null],
    ['empty', '', null],
  ])('reads id_session given as %s', (_name, value, expected) => {
    expect(acceptCall({ id_session: value }).deviceId).toBe(expected);
    expect(accept({ type: 'RECORD', whatsapp_call_id: 'c1', id_session: value })).toMatchObject({ deviceId: expected });
  });

  it.each<[string, unknown, string | null]>([
    ['a URL', 'https://storage.wavoip.com/123456', 'https://storage.wavoip.com/123456'],
    ['a padded URL', '  https://storage.wavoip.com/1  ', 'https://storage.wavoip.com/1'],
    ['empty', '', null],
    ['an object', { href: 'https://x' }, null],
    ['false', false, null],
    ['null', null, null],
  ])('reads record_url given as %s', (_name, value, expected) => {
    expect(acceptCall({ record_url: value }).recordUrl).toBe(expected);
    expect(accept({ type: 'RECORD', whatsapp_call_id: 'c1', record_url: value })).toMatchObject({ recordUrl: expected });
  });

  it('upper-cases status, record_status and direction, keeping unknown values', () => {
    const event = acceptCall({ status: ' ended ', record_status: 'mixing', direction: 'outcoming' });
    expect(event).toMatchObject({ status: 'ENDED', recordStatus: 'MIXING', direction: 'OUTCOMING' });
    expect(acceptCall({ status: 'Calling', direction: 'SIDEWAYS' })).toMatchObject({ status: 'CALLING', direction: 'SIDEWAYS' });
    expect(acceptCall({ status: 'brand_new_state' }).status).toBe('BRAND_NEW_STATE');
  });

  it('reads statuses of the wrong type as absent', () => {
    const event = acceptCall({ status: { value: 'ENDED' }, record_status: ['READY'], direction: false });
    expect(event).toMatchObject({ status: null, recordStatus: null, direction: null });
  });

  it('does not take a CALL record status from its status field', () => {
    const event = acceptCall({ status: 'ENDED' });
    expect(event).toMatchObject({ status: 'ENDED', recordStatus: null });
  });

  it('bounds very long text values instead of refusing them', () => {
    const event = acceptCall({ caller: '9'.repeat(10_000), status: 's'.repeat(500), record_url: `https://x/${'a'.repeat(9_000)}` });
    expect(event.caller?.length).toBeLessThanOrEqual(2048);
    expect(event.caller?.startsWith('9999')).toBe(true);
    expect(event.status?.length).toBeLessThanOrEqual(64);
    expect(event.status?.startsWith('SSSS')).toBe(true);
    expect(event.recordUrl?.length).toBeLessThanOrEqual(2048);
  });
});

describe('normalizeWebhookPayload: DEVICE', () => {
  it.each<[string, Record<string, unknown>, WebhookEvent]>([
    ['the documented event', { type: 'DEVICE', action: 'UPDATE', id_session: 8758847, phone: '5566999050312', status: 'open' },
      { type: 'DEVICE', deviceId: '8758847', phone: '5566999050312', status: 'open' }],
    ['an upper-case status', { type: 'DEVICE', id_session: '12', phone: 5566999050312, status: 'WAITING_PAYMENT' },
      { type: 'DEVICE', deviceId: '12', phone: '5566999050312', status: 'WAITING_PAYMENT' }],
    ['no fields at all', { type: 'DEVICE' }, { type: 'DEVICE', deviceId: null, phone: null, status: null }],
    ['fields of the wrong type', { type: 'device', id_session: { a: 1 }, phone: true, status: ['open'] },
      { type: 'DEVICE', deviceId: null, phone: null, status: null }],
    ['no type', { id_session: 5, phone: '55', status: 'close' }, { type: 'DEVICE', deviceId: '5', phone: '55', status: 'close' }],
  ])('reads %s', (_name, body, expected) => {
    expect(normalizeWebhookPayload(body)).toEqual({ ok: true, event: expected });
  });
});

describe('normalizeWebhookPayload: extra fields never cause a failure', () => {
  const bodies: Record<string, Record<string, unknown>> = {
    call: { type: 'CALL', action: 'CREATE', whatsapp_call_id: 'c1', status: 'ACTIVE', caller: '55' },
    record: { type: 'RECORD', whatsapp_call_id: 'c1', record_status: 'READY' },
    device: { type: 'DEVICE', id_session: 1, phone: '55', status: 'open' },
  };
  const extras: Record<string, unknown> = {
    transport: 'WSS',
    is_contact: true,
    action: { nested: [1, 2, { deep: null }] },
    metadata: null,
    tags: ['a', 'b'],
    constructor: 'x',
    toString: 5,
    hasOwnProperty: false,
    valueOf: {},
  };

  it.each(Object.entries(bodies))('%s body with extra fields reads as without them', (_name, body) => {
    const plain = normalizeWebhookPayload(body);
    expect(plain.ok).toBe(true);
    expect(normalizeWebhookPayload({ ...extras, ...body })).toEqual(plain);
  });

  it.each(Object.entries(bodies))('%s body with a __proto__ key from JSON.parse reads as without it', (_name, body) => {
    const text = JSON.stringify(body).replace(/^\{/, '{"__proto__":{"type":"DEVICE","whatsapp_call_id":null,"polluted":true},');
    const parsed: unknown = JSON.parse(text);
    expect(normalizeWebhookPayload(parsed)).toEqual(normalizeWebhookPayload(body));
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('accepts a body whose prototype is null', () => {
    const body = Object.assign(Object.create(null) as Record<string, unknown>, { type: 'RECORD', whatsapp_call_id: 'n1', status: 'mixing' });
    expect(normalizeWebhookPayload(body)).toEqual({
      ok: true,
      event: { type: 'RECORD', callId: 'n1', recordStatus: 'MIXING', recordUrl: null, deviceId: null },
    });
  });
});
