import { describe, expect, it } from 'vitest';
import { toE164 } from '../../src/calls/phone-number.ts';

describe('toE164: digits already carry their country code', () => {
  it.each<[string, string | null, string | null]>([
    // As WaVoIP sends them (test/fixtures/wavoip-payloads.json).
    ['a Brazilian mobile', '5566999050312', '+5566999050312'],
    ['a Brazilian landline', '556692341814', '+556692341814'],
    ['already E.164', '+5511911112222', '+5511911112222'],
    ['formatted', '+55 (21) 98765-4321', '+5521987654321'],
    ['dots and slashes', '55.21/98765.4321', '+5521987654321'],
    ['padded', '  5511911112222 ', '+5511911112222'],
    ['a US number', '14155552671', '+14155552671'],
    ['the shortest (7 digits)', '6834002', '+6834002'],
    ['the longest (15 digits)', '123456789012345', '+123456789012345'],
    ['a WhatsApp address', '5511911112222@s.whatsapp.net', '+5511911112222'],
    ['a WhatsApp address with a device', '5511911112222:12@s.whatsapp.net', '+5511911112222'],
    ['an old WhatsApp address', '5511911112222@c.us', '+5511911112222'],
    // Not normalised: the raw text stays the record, no country is guessed.
    ['a national number with a trunk 0', '011911112222', null],
    ['an international 00 prefix', '005511911112222', null],
    ['too short', '123456', null],
    ['too long (16 digits)', '1234567890123456', null],
    ['letters', '55119111abcd', null],
    ['two plus signs', '++5511911112222', null],
    ['a plus sign inside', '55+11911112222', null],
    ['a linked id, not a number', '123456789012345@lid', null],
    ['another domain', '5511911112222@example.com', null],
    ['empty', '', null],
    ['null', null, null],
  ])('%s: %s → %s', (_name, raw, expected) => {
    expect(toE164(raw)).toBe(expected);
  });

  it('gives the same number for the raw digits and the E.164 form, so either finds a call', () => {
    for (const raw of ['5566999050312', '556692341814', '5511911112222']) expect(toE164(toE164(raw))).toBe(toE164(raw));
  });
});
