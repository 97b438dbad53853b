import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MAX_CALL_ID_LENGTH, normalizeWebhookPayload, type NormalizeResult } from '../../src/calls/webhook-event.ts';
import { buildRecordingUrl } from '../../src/calls/recording.ts';

/** What a call id may not hold: C0 and C1 control characters, DEL, and lone surrogates. */
const REFUSED_IN_CALL_ID = /[\u0000-\u001f\u007f-\u009f]|[\ud800-\udfff]/u;
const EVENT_TYPES = ['CALL', 'RECORD', 'DEVICE', 'UNKNOWN'];
const STATUS_KEYS = ['status', 'recordStatus', 'direction'] as const;

/** The invariants every result must satisfy, whatever the body. */
function checkResult(body: unknown, result: NormalizeResult): void {
  if (!result.ok) {
    expect(['body', 'whatsapp_call_id']).toContain(result.field);
    expect(typeof result.error).toBe('string');
    expect(result.error.length).toBeGreaterThan(0);
    const isObject = typeof body === 'object' && body !== null && !Array.isArray(body);
    expect(result.field === 'body').toBe(!isObject);
    return;
  }
  const { event } = result;
  expect(EVENT_TYPES).toContain(event.type);
  if (event.type === 'CALL' || event.type === 'RECORD') {
    expect(typeof event.callId).toBe('string');
    expect(event.callId.length).toBeGreaterThan(0);
    expect(event.callId.length).toBeLessThanOrEqual(MAX_CALL_ID_LENGTH);
    expect(event.callId).toBe(event.callId.trim());
    expect(REFUSED_IN_CALL_ID.test(event.callId)).toBe(false);
    for (const key of STATUS_KEYS) {
      const value = (event as unknown as Record<string, unknown>)[key];
      if (value === undefined || value === null) continue;
      expect(typeof value).toBe('string');
      expect(value).toBe((value as string).toUpperCase());
      expect((value as string).length).toBeGreaterThan(0);
    }
  }
  if (event.type === 'CALL' && event.duration !== null) {
    expect(Number.isFinite(event.duration)).toBe(true);
    expect(event.duration).toBeGreaterThanOrEqual(0);
  }
}

const interestingKeys = fc.constantFrom(
  '__proto__', 'constructor', 'prototype', 'toString', 'valueOf', 'hasOwnProperty',
  'type', 'action', 'whatsapp_call_id', 'id_session', 'status', 'record_status', 'record_url',
  'direction', 'caller', 'receiver', 'duration', 'phone',
);
const interestingValues = fc.oneof(
  fc.constantFrom('CALL', 'RECORD', 'DEVICE', 'HUMANIZED', 'ROBOTIC', 'call', 'READY', 'MIXING', 'ENDED', '', ' ', '\u0000'),
  fc.integer(),
  fc.double(),
  fc.jsonValue({ maxDepth: 2 }),
);
const trickyObject = fc.dictionary(fc.oneof(interestingKeys, fc.string()), interestingValues, { maxKeys: 10 });

describe('normalizeWebhookPayload properties', () => {
  it('never throws on any JSON value, and returns ok or a field with an error', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (body) => {
        checkResult(body, normalizeWebhookPayload(body));
      }),
      { numRuns: 500 },
    );
  });

  it('never throws on any JavaScript value, prototypes and odd objects included', () => {
    const anything = fc.anything({
      withNullPrototype: true, withObjectString: true, withBigInt: true, withBoxedValues: true,
      withDate: true, withMap: true, withSet: true, withTypedArray: true, withSparseArray: true,
    });
    fc.assert(
      fc.property(anything, (body) => {
        checkResult(body, normalizeWebhookPayload(body));
      }),
      { numRuns: 500 },
    );
  });

  it('never throws on objects built from dangerous and meaningful keys, parsed as intake parses them', () => {
    fc.assert(
      fc.property(trickyObject, (object) => {
        for (const body of [object, JSON.parse(JSON.stringify(object)) as unknown]) {
          checkResult(body, normalizeWebhookPayload(body));
        }
        expect(Object.prototype).not.toHaveProperty('type');
        expect(Object.prototype).not.toHaveProperty('whatsapp_call_id');
      }),
      { numRuns: 500 },
    );
  });

  it('accepts a string call id exactly when, trimmed, it is 1–128 characters of valid text without control characters, and not a path step', () => {
    const idText = fc.oneof(
      fc.string({ maxLength: 140 }),
      fc.string({ unit: 'binary-ascii', maxLength: 140 }),
      fc.string({ unit: 'binary', maxLength: 140 }),
      fc.integer({ min: 120, max: 135 }).map((length) => ' '.repeat(3) + 'k'.repeat(length) + '\t'),
      fc.constantFrom('.', '..', ' . ', '...', '..x'),
    );
    fc.assert(
      fc.property(idText, fc.constantFrom('CALL', 'RECORD', 'HUMANIZED'), (raw, type) => {
        const result = normalizeWebhookPayload({ type, whatsapp_call_id: raw });
        const trimmed = raw.trim();
        const valid =
          trimmed.length > 0 && trimmed.length <= MAX_CALL_ID_LENGTH && !REFUSED_IN_CALL_ID.test(trimmed) && trimmed !== '.' && trimmed !== '..';
        if (valid) {
          expect(result).toMatchObject({ ok: true, event: { callId: trimmed } });
        } else {
          expect(result).toMatchObject({ ok: false, field: 'whatsapp_call_id' });
        }
      }),
      { numRuns: 1000 },
    );
  });

  it('stores a numeric call id as the text of a non-negative safe integer, and refuses every other number', () => {
    fc.assert(
      fc.property(fc.oneof(fc.maxSafeNat(), fc.integer(), fc.double(), fc.bigInt().map(Number)), (value) => {
        const result = normalizeWebhookPayload({ type: 'RECORD', whatsapp_call_id: value, record_status: 'READY' });
        if (Number.isSafeInteger(value) && value >= 0) {
          expect(result).toMatchObject({ ok: true, event: { callId: String(value) } });
          const asText = normalizeWebhookPayload({ type: 'RECORD', whatsapp_call_id: ` ${String(value)} `, record_status: 'READY' });
          expect(asText).toEqual(result);
        } else {
          expect(result).toMatchObject({ ok: false, field: 'whatsapp_call_id' });
        }
      }),
      { numRuns: 1000 },
    );
  });

  it('reads a RECORD status the same from record_status or status, trimmed and upper-cased', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 60 }), (status) => {
        const fromRecordStatus = normalizeWebhookPayload({ type: 'RECORD', whatsapp_call_id: 'c1', record_status: status });
        const fromStatus = normalizeWebhookPayload({ type: 'RECORD', whatsapp_call_id: 'c1', status });
        expect(fromStatus).toEqual(fromRecordStatus);
        const expected = status.trim() === '' ? null : status.trim().toUpperCase();
        expect(fromRecordStatus).toMatchObject({ ok: true, event: { recordStatus: expected } });
      }),
      { numRuns: 500 },
    );
  });

  it('gives the same event whatever extra fields come along', () => {
    const known = new Set([
      'type', 'action', 'whatsapp_call_id', 'id_session', 'status', 'record_status', 'record_url',
      'direction', 'caller', 'receiver', 'duration', 'phone',
    ]);
    const extraKeys = fc.oneof(fc.string(), fc.constantFrom('__proto__', 'constructor', 'transport', 'is_contact'))
      .filter((key) => !known.has(key));
    const bodies = fc.constantFrom<Record<string, unknown>>(
      { type: 'CALL', action: 'CREATE', whatsapp_call_id: 123456, status: 'ACTIVE', direction: 'INCOMING', duration: 45 },
      { type: 'HUMANIZED', whatsapp_call_id: 123456, status: 'ENDED', record_status: 'MIXING' },
      { type: 'RECORD', whatsapp_call_id: 'test123', record_status: 'READY' },
      { whatsapp_call_id: 'abc', record_status: 'READY' },
      { type: 'DEVICE', id_session: 1, phone: '55', status: 'open' },
      { type: 'SOMETHING_NEW' },
    );
    fc.assert(
      fc.property(bodies, fc.dictionary(extraKeys, fc.jsonValue({ maxDepth: 2 }), { maxKeys: 6 }), (body, extra) => {
        const merged = JSON.parse(JSON.stringify({ ...extra, ...body })) as unknown;
        expect(normalizeWebhookPayload(merged)).toEqual(normalizeWebhookPayload(body));
      }),
      { numRuns: 300 },
    );
  });
});

describe('accepted call ids and the default recording URL', () => {
  const template = 'https://storage.wavoip.com/{whatsapp_call_id}';

  it('builds a storage URL for every call id normalize accepts, lone surrogates included', () => {
    // JSON.parse turns "\ud800" escapes into lone surrogates, which encodeURIComponent refuses.
    const unit = fc.oneof(
      { weight: 5, arbitrary: fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }) },
      { weight: 1, arbitrary: fc.constantFrom('\ud800', '\udfff', '\udc00') },
    );
    fc.assert(
      fc.property(fc.string({ unit, minLength: 1, maxLength: 40 }), (raw) => {
        const result = normalizeWebhookPayload({ type: 'RECORD', whatsapp_call_id: raw, record_status: 'READY' });
        if (!result.ok || result.event.type !== 'RECORD') return;
        const url = new URL(buildRecordingUrl(template, result.event.callId));
        expect(url.host).toBe('storage.wavoip.com');
      }),
      { numRuns: 500 },
    );
  });

  it('example: the JSON body {"type":"RECORD","whatsapp_call_id":"\\ud800x","record_status":"READY"}', () => {
    const body: unknown = JSON.parse('{"type":"RECORD","whatsapp_call_id":"\\ud800x","record_status":"READY"}');
    // A lone surrogate has no UTF-8 form, so no URL or file name could carry it: refused by name.
    expect(normalizeWebhookPayload(body)).toEqual({
      ok: false,
      field: 'whatsapp_call_id',
      error: 'RECORD event: whatsapp_call_id must be valid Unicode text',
    });
  });
});
