import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { normalizeWebhookPayload, type WebhookEvent } from '../../src/calls/webhook-event.ts';

const fixtures = JSON.parse(
  readFileSync(new URL('../fixtures/wavoip-payloads.json', import.meta.url), 'utf8'),
) as Record<string, unknown>;

function accept(body: unknown): WebhookEvent {
  const result = normalizeWebhookPayload(body);
  if (!result.ok) throw new Error(`expected ${JSON.stringify(body)} to be accepted, got ${result.field}: ${result.error}`);
  return result.event;
}

function refuse(body: unknown): { field: string; error: string } {
  const result = normalizeWebhookPayload(body);
  if (result.ok) throw new Error(`expected ${JSON.stringify(body)} to be refused, got ${JSON.stringify(result.event)}`);
  return { field: result.field, error: result.error };
}

const CALL_NULLS = {
  status: null, recordStatus: null, recordUrl: null, direction: null,
  caller: null, receiver: null, deviceId: null, duration: null, callType: null, peerPhone: null, peerName: null,
} as const;

describe('normalizeWebhookPayload: every fixture payload', () => {
  const expected: Record<string, WebhookEvent> = {
    call_create_documented: {
      ...CALL_NULLS, type: 'CALL', callId: '123456', status: 'ACTIVE', direction: 'INCOMING', duration: 45, recordStatus: 'RECORDING',
    },
    call_create_live: {
      ...CALL_NULLS,
      type: 'CALL', callId: '3528B6CDB8D38FDA799C4AEA28E9BDC5', status: 'CALLING', recordStatus: null, recordUrl: null,
      direction: 'OUTCOMING', caller: '5566999050312', receiver: '556692341814', deviceId: '8758847', duration: 0,
    },
    call_type_overwritten: {
      ...CALL_NULLS, type: 'CALL', callId: '123456', status: 'ENDED', recordStatus: 'MIXING', recordUrl: null, direction: 'INCOMING',
      caller: '5511911112222', receiver: '5511933334444', deviceId: '789', duration: 45, callType: 'HUMANIZED',
    },
    call_outgoing_with_peer: {
      ...CALL_NULLS, type: 'CALL', callId: '5F0C1A2B3C4D5E6F708192A3B4C5D6E7', status: 'ACTIVE', direction: 'OUTGOING', deviceId: '8758847',
      duration: 0, peerPhone: '5521987654321', peerName: 'Maria Souza',
    },
    call_robotic_lowercase_direction: {
      ...CALL_NULLS, type: 'CALL', callId: '123458', status: 'NOT_ANSWERED', direction: 'INCOMING', deviceId: '789', duration: 0,
      caller: '+55 (21) 98765-4321', receiver: '5566999050312', callType: 'ROBOTIC',
    },
    record_url_without_status: {
      type: 'RECORD', callId: '123456', recordStatus: null, recordUrl: 'https://storage.wavoip.com/123456', deviceId: '789',
    },
    record_ready_documented: {
      type: 'RECORD', callId: '123456', recordStatus: 'READY', recordUrl: 'https://storage.wavoip.com/123456', deviceId: '789',
    },
    record_status_in_status_field: {
      type: 'RECORD', callId: '123456', recordStatus: 'READY', recordUrl: 'https://storage.wavoip.com/123456', deviceId: '789',
    },
    record_manual_test: { type: 'RECORD', callId: 'test123', recordStatus: 'READY', recordUrl: null, deviceId: null },
    record_empty: { type: 'RECORD', callId: '123457', recordStatus: 'EMPTY_RECORDING', recordUrl: null, deviceId: '789' },
    device_update: { type: 'DEVICE', deviceId: '8758847', phone: '5566999050312', status: 'open' },
  };

  it('has an expectation for every payload in the fixture file', () => {
    expect(Object.keys(fixtures).filter((name) => !name.startsWith('_')).sort()).toEqual(Object.keys(expected).sort());
  });

  it.each(Object.entries(expected))('%s', (name, event) => {
    expect(normalizeWebhookPayload(fixtures[name])).toEqual({ ok: true, event });
  });

  it('does not modify the body it reads', () => {
    const bodies = Object.values(fixtures);
    expect(bodies.length).toBeGreaterThanOrEqual(Object.keys(expected).length);
    for (const body of bodies) {
      const before = JSON.stringify(body);
      normalizeWebhookPayload(body);
      expect(JSON.stringify(body)).toBe(before);
    }
  });
});

describe('normalizeWebhookPayload: whatsapp_call_id', () => {
  const accepted: Array<[unknown, string]> = [
    [123456, '123456'],
    ['123456', '123456'],
    [0, '0'],
    [-0, '0'],
    [Number.MAX_SAFE_INTEGER, '9007199254740991'],
    ['3528B6CDB8D38FDA799C4AEA28E9BDC5', '3528B6CDB8D38FDA799C4AEA28E9BDC5'],
    ['  test123  ', 'test123'],
    ['\t\ntest123\r\n', 'test123'],
    ['\u00a0abc\u2003', 'abc'],
    ['x'.repeat(128), 'x'.repeat(128)],
    [`   ${'y'.repeat(128)}   `, 'y'.repeat(128)],
    ['a b', 'a b'],
    ['../../etc/passwd', '../../etc/passwd'],
    ['ação-通话', 'ação-通话'],
    ['007', '007'],
  ];
  const refused: Array<[string, unknown]> = [
    ['129 characters', 'x'.repeat(129)],
    ['129 characters inside spaces', ` ${'x'.repeat(129)} `],
    ['empty string', ''],
    ['only spaces', '   '],
    ['only unicode spaces', '\u00a0\u2003'],
    ['NUL inside', 'a\u0000b'],
    ['leading NUL', '\u0000abc'],
    ['newline inside', 'a\nb'],
    ['tab inside', 'a\tb'],
    ['unit separator', 'a\u001fb'],
    ['DEL', 'a\u007fb'],
    ['escape sequence', 'a\u001b[31mb'],
    ['unsafe integer 2^53', 2 ** 53],
    ['unsafe integer 2^53 + 2', Number.MAX_SAFE_INTEGER + 3],
    ['1e21', 1e21],
    ['negative', -1],
    ['negative large', -123456],
    ['float', 1.5],
    ['small float', 0.1],
    ['NaN', Number.NaN],
    ['Infinity', Number.POSITIVE_INFINITY],
    ['-Infinity', Number.NEGATIVE_INFINITY],
    ['object', { id: 123456 }],
    ['empty object', {}],
    ['array', ['123456']],
    ['empty array', []],
    ['true', true],
    ['false', false],
    ['null', null],
    ['bigint', 123456n],
  ];

  describe.each(['CALL', 'RECORD', 'HUMANIZED', 'ROBOTIC', 'call', 'record'])('with type %s', (type) => {
    it.each(accepted)('accepts %j as %j', (value, callId) => {
      const event = accept({ type, whatsapp_call_id: value, record_status: 'READY' });
      expect(event).toMatchObject({ callId });
    });

    it.each(refused)('refuses %s with field whatsapp_call_id', (_name, value) => {
      const { field, error } = refuse({ type, whatsapp_call_id: value, record_status: 'READY' });
      expect(field).toBe('whatsapp_call_id');
      expect(error).toContain('whatsapp_call_id');
    });
  });

  // HUMANIZED / ROBOTIC without an id: see the dedicated test under "event type".
  it.each(['CALL', 'RECORD', 'call', 'record'])('refuses a %s without whatsapp_call_id, naming the field', (type) => {
    expect(refuse({ type, record_status: 'READY', status: 'ENDED', caller: '5511911112222' }).field).toBe('whatsapp_call_id');
  });

  it.each(['.', '..', ' .. '])('refuses %j, which URL parsers read as a path step', (value) => {
    expect(normalizeWebhookPayload({ type: 'RECORD', whatsapp_call_id: value, record_status: 'READY' })).toMatchObject({
      ok: false,
      field: 'whatsapp_call_id',
      error: 'RECORD event: whatsapp_call_id must not be "." or ".."',
    });
    expect(normalizeWebhookPayload({ type: 'RECORD', whatsapp_call_id: '...', record_status: 'READY' }).ok).toBe(true);
  });

  it('refuses C1 control characters (U+0080–U+009F) like the C0 ones', () => {
    for (const value of ['a\u0085b', 'a\u0080b', 'a\u009bb', 'a\u009fb']) {
      expect(normalizeWebhookPayload({ type: 'RECORD', whatsapp_call_id: value, record_status: 'READY' })).toMatchObject({
        ok: false,
        field: 'whatsapp_call_id',
      });
    }
  });

  it('stores a number and the same digits as a string as the same call', () => {
    const fromNumber = accept({ type: 'RECORD', whatsapp_call_id: 98765, record_status: 'READY' });
    const fromString = accept({ type: 'RECORD', whatsapp_call_id: ' 98765 ', record_status: 'READY' });
    expect(fromNumber).toEqual(fromString);
  });

  it('names the type of the event in the error', () => {
    expect(refuse({ type: 'RECORD', whatsapp_call_id: '' }).error).toMatch(/RECORD/);
    expect(refuse({ type: 'CALL', whatsapp_call_id: '' }).error).toMatch(/CALL/);
  });
});

describe('normalizeWebhookPayload: RECORD status', () => {
  const base = { type: 'RECORD', whatsapp_call_id: 'c1' };
  it.each<[string, Record<string, unknown>, string | null]>([
    ['record_status', { record_status: 'READY' }, 'READY'],
    ['status', { status: 'READY' }, 'READY'],
    ['record_status over status', { record_status: 'MIXING', status: 'READY' }, 'MIXING'],
    ['status when record_status is empty', { record_status: '', status: 'READY' }, 'READY'],
    ['status when record_status is null', { record_status: null, status: 'DISABLED' }, 'DISABLED'],
    ['status when record_status is an object', { record_status: { v: 1 }, status: 'READY' }, 'READY'],
    ['status when record_status is a boolean', { record_status: true, status: 'EMPTY_RECORDING' }, 'EMPTY_RECORDING'],
    ['lower case, upper-cased', { record_status: 'ready' }, 'READY'],
    ['mixed case in status', { status: 'Empty_Recording' }, 'EMPTY_RECORDING'],
    ['padded', { record_status: '  mixing \n' }, 'MIXING'],
    ['unknown status kept', { record_status: 'TRANSCODING_V2' }, 'TRANSCODING_V2'],
    ['neither', {}, null],
    ['both empty', { record_status: ' ', status: '' }, null],
    ['array status', { status: ['READY'] }, null],
  ])('reads %s', (_name, fields, recordStatus) => {
    expect(accept({ ...base, ...fields })).toEqual({ type: 'RECORD', callId: 'c1', recordStatus, recordUrl: null, deviceId: null });
  });
});

describe('normalizeWebhookPayload: event type', () => {
  it.each<[string, Record<string, unknown>, WebhookEvent['type']]>([
    ['CALL', { type: 'CALL', whatsapp_call_id: 1 }, 'CALL'],
    ['lower-case call', { type: 'call', whatsapp_call_id: 1 }, 'CALL'],
    ['padded CALL', { type: ' CALL ', whatsapp_call_id: 1 }, 'CALL'],
    ['HUMANIZED with call fields', { type: 'HUMANIZED', whatsapp_call_id: 1, status: 'ENDED', duration: 3 }, 'CALL'],
    ['HUMANIZED with only an id', { type: 'HUMANIZED', whatsapp_call_id: 1 }, 'CALL'],
    ['HUMANIZED with a record_status', { type: 'HUMANIZED', whatsapp_call_id: 1, record_status: 'READY' }, 'CALL'],
    ['ROBOTIC', { type: 'ROBOTIC', whatsapp_call_id: 1, status: 'ACTIVE' }, 'CALL'],
    ['lower-case robotic', { type: 'robotic', whatsapp_call_id: 1 }, 'CALL'],
    ['RECORD', { type: 'RECORD', whatsapp_call_id: 1, status: 'READY' }, 'RECORD'],
    ['RECORD with call fields', { type: 'RECORD', whatsapp_call_id: 1, caller: '1', direction: 'INCOMING' }, 'RECORD'],
    ['DEVICE', { type: 'DEVICE', id_session: 1 }, 'DEVICE'],
    ['DEVICE with a call id', { type: 'DEVICE', whatsapp_call_id: 1, id_session: 1 }, 'DEVICE'],
    ['no type, direction', { whatsapp_call_id: 1, direction: 'INCOMING' }, 'CALL'],
    ['no type, caller', { whatsapp_call_id: 1, caller: '5511' }, 'CALL'],
    ['no type, receiver', { whatsapp_call_id: 1, receiver: '5511' }, 'CALL'],
    ['no type, duration', { whatsapp_call_id: 1, duration: 0 }, 'CALL'],
    ['no type, record fields only', { whatsapp_call_id: 1, record_status: 'READY', record_url: 'https://x/1' }, 'RECORD'],
    ['no type, bare id', { whatsapp_call_id: 'abc' }, 'RECORD'],
    ['no type, a call status', { whatsapp_call_id: 'x', status: 'ENDED' }, 'CALL'],
    ['no type, a record status in status', { whatsapp_call_id: 'x', status: 'READY' }, 'RECORD'],
    ['empty type', { type: '', whatsapp_call_id: 1, caller: '1' }, 'CALL'],
    ['null type', { type: null, whatsapp_call_id: 1, record_status: 'READY' }, 'RECORD'],
    ['object type', { type: { name: 'CALL' }, whatsapp_call_id: 1, record_status: 'READY' }, 'RECORD'],
    ['no type, device fields', { id_session: 8758847, phone: '5566999050312', status: 'open' }, 'DEVICE'],
    ['no type, id_session only', { id_session: 8758847 }, 'UNKNOWN'],
    ['no type, phone only', { phone: '5566999050312' }, 'UNKNOWN'],
    ['no type, call fields but no id', { status: 'ENDED', caller: '1', direction: 'INCOMING' }, 'UNKNOWN'],
    ['empty object', {}, 'UNKNOWN'],
    ['unknown type', { type: 'MESSAGE', whatsapp_call_id: 1 }, 'UNKNOWN'],
    ['unknown type, bad id', { type: 'PING', whatsapp_call_id: { bad: true } }, 'UNKNOWN'],
    ['plural type', { type: 'CALLS', whatsapp_call_id: 1 }, 'UNKNOWN'],
    ['numeric type', { type: 5, whatsapp_call_id: 1 }, 'UNKNOWN'],
  ])('%s', (_name, body, type) => {
    expect(accept(body).type).toBe(type);
  });

  it.each<[Record<string, unknown>, string | null]>([
    [{ type: 'MESSAGE' }, 'MESSAGE'],
    [{ type: '  presence ' }, 'presence'],
    [{ type: 42 }, '42'],
    [{}, null],
    [{ foo: 'bar' }, null],
  ])('keeps the declared type of an unknown event: %j', (body, declaredType) => {
    expect(normalizeWebhookPayload(body)).toEqual({ ok: true, event: { type: 'UNKNOWN', declaredType } });
  });

  it('treats a HUMANIZED body without whatsapp_call_id as a CALL without a usable id', () => {
    const body = { type: 'HUMANIZED', action: 'UPDATE', status: 'ENDED', caller: '5511911112222', duration: 45 };
    expect(normalizeWebhookPayload(body)).toMatchObject({ ok: false, field: 'whatsapp_call_id' });
  });
});

describe('normalizeWebhookPayload: non-object bodies', () => {
  it.each<[string, unknown]>([
    ['null', null],
    ['undefined', undefined],
    ['array', []],
    ['array of events', [{ type: 'RECORD', whatsapp_call_id: 1, record_status: 'READY' }]],
    ['string', 'RECORD'],
    ['JSON text', '{"type":"RECORD","whatsapp_call_id":1}'],
    ['empty string', ''],
    ['number', 123456],
    ['zero', 0],
    ['true', true],
    ['false', false],
  ])('refuses %s with field body', (_name, body) => {
    const { field, error } = refuse(body);
    expect(field).toBe('body');
    expect(error).toMatch(/object/);
  });
});
