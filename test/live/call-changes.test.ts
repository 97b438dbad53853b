import { describe, expect, it } from 'vitest';
import { prefixRangeEnd } from '../../src/db/calls-repository.ts';
import { notificationPayloads } from '../../src/live/call-changes.ts';

describe('the search range of a call id prefix', () => {
  const inRange = (prefix: string, id: string) => {
    const end = prefixRangeEnd(prefix);
    // Byte order, as SQLite and PostgreSQL's C collation compare.
    const bytes = (text: string) => Buffer.from(text, 'utf8');
    return Buffer.compare(bytes(id), bytes(prefix)) >= 0 && (end === null || Buffer.compare(bytes(id), bytes(end)) < 0);
  };

  it.each([
    ['3528B6', '3528B6CDB8D38FDA799C4AEA28E9BDC5', true],
    ['3528B6', '3528B6', true],
    ['3528B6', '3528B7', false],
    ['3528B6', '3528B5FFFF', false],
    ['abc', 'abc\u{10FFFF}\u{10FFFF}', true],
    ['ab\u{10FFFF}', 'ab\u{10FFFF}x', true],
    ['ab\u{10FFFF}', 'ac', false],
    ['a\uD7FF', 'a\uD7FFz', true],
    ['a\uD7FF', 'a\uE000', false],
  ])('prefix %j: %j in range is %s', (prefix, id, expected) => {
    expect(inRange(prefix, id)).toBe(expected);
  });

  it('is open-ended for a prefix of the last code point only', () => {
    expect(prefixRangeEnd('\u{10FFFF}\u{10FFFF}')).toBeNull();
  });
});

describe('notifications of changed call ids', () => {
  it('fit each payload under pg_notify\'s 8000 bytes, keeping every id once and in order', () => {
    const ids = Array.from({ length: 400 }, (_, n) => `${'Ç'.repeat(40)}-${n}`);
    const payloads = notificationPayloads(ids);
    expect(payloads.length).toBeGreaterThan(1);
    for (const payload of payloads) expect(Buffer.byteLength(payload)).toBeLessThan(8000);
    expect(payloads.flatMap((payload) => JSON.parse(payload) as string[])).toEqual(ids);
  });

  it('sends a few ids as one payload', () => {
    expect(notificationPayloads(['a', 'b'])).toEqual(['["a","b"]']);
  });
});
