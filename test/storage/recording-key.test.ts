import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { assertRecordingKey, recordingKeyFor } from '../../src/storage/recording-store.ts';

// Call ids come from unauthenticated webhooks: any string, including hostile ones.
const SHA = 'a'.repeat(64);

const callIds = fc.oneof(
  fc.string({ maxLength: 200 }),
  fc.string({ unit: 'grapheme', maxLength: 128 }),
  fc.string({ unit: fc.constantFrom('.', '/', '\\', '\0', '-', 'a', ' '), maxLength: 40 }),
);

describe('recordingKeyFor', () => {
  it.each([
    ['3528B6CDB8D38FDA799C4AEA28E9BDC5', 'ogg', /^3528B6CDB8D38FDA799C4AEA28E9BDC5-[0-9a-f]{16}-aaaaaaaaaaaaaaaa\.ogg$/],
    ['../../etc/passwd', 'mp3', /^etc_passwd-[0-9a-f]{16}-aaaaaaaaaaaaaaaa\.mp3$/],
    ['', 'wav', /^[0-9a-f]{16}-aaaaaaaaaaaaaaaa\.wav$/],
    ['..', 'wav', /^[0-9a-f]{16}-aaaaaaaaaaaaaaaa\.wav$/],
    ['--rf', 'OPUS', /^rf-[0-9a-f]{16}-aaaaaaaaaaaaaaaa\.opus$/],
    ['ligação', 'ogg', /^liga_o-[0-9a-f]{16}-aaaaaaaaaaaaaaaa\.ogg$/],
  ])('%j, %j → %s', (callId, extension, expected) => {
    expect(recordingKeyFor(callId, SHA, extension)).toMatch(expected);
  });

  it('keeps the readable prefix to 64 characters', () => {
    const key = recordingKeyFor('a'.repeat(128), SHA, 'ogg');
    expect(key).toBe(`${'a'.repeat(64)}-${key.slice(65, 81)}-${SHA.slice(0, 16)}.ogg`);
  });

  it('refuses an extension that could smuggle a path', () => {
    for (const extension of ['', '../x', 'a/b', 'ogg\0', 'waytoolongext']) {
      expect(() => recordingKeyFor('id', SHA, extension)).toThrow(expect.objectContaining({ code: 'INVALID_KEY' }));
    }
  });

  it('always gives a plain file name the store accepts', () => {
    fc.assert(
      fc.property(callIds, (callId) => {
        const key = recordingKeyFor(callId, SHA, 'ogg');
        expect(key).not.toMatch(/[/\\\0]/);
        expect(key).not.toContain('..');
        expect(key.startsWith('.')).toBe(false);
        expect(key.length).toBeLessThanOrEqual(64 + 1 + 16 + 1 + 16 + 4);
        expect(() => assertRecordingKey(key)).not.toThrow();
      }),
    );
  });

  it('is deterministic and gives distinct ids distinct keys', () => {
    fc.assert(
      fc.property(callIds, callIds, (a, b) => {
        expect(recordingKeyFor(a, SHA, 'ogg')).toBe(recordingKeyFor(a, SHA, 'ogg'));
        if (a !== b) expect(recordingKeyFor(a, SHA, 'ogg')).not.toBe(recordingKeyFor(b, SHA, 'ogg'));
      }),
    );
  });

  // On case-insensitive filesystems 'ABC' and 'abc' must not land on one file.
  it('keeps ids differing only in case apart even when compared case-insensitively', () => {
    fc.assert(
      fc.property(fc.stringMatching(/^[a-z]{1,20}$/), (id) => {
        const lower = recordingKeyFor(id, SHA, 'ogg').toLowerCase();
        const upper = recordingKeyFor(id.toUpperCase(), SHA, 'ogg').toLowerCase();
        expect(lower).not.toBe(upper);
      }),
    );
  });
});

describe('recordingKeyFor and content', () => {
  it('gives the same key to the same bytes and another key to other bytes', () => {
    const other = 'b'.repeat(64);
    expect(recordingKeyFor('call', SHA, 'ogg')).toBe(recordingKeyFor('call', SHA, 'ogg'));
    expect(recordingKeyFor('call', SHA, 'ogg')).not.toBe(recordingKeyFor('call', other, 'ogg'));
  });

  it('refuses a sha256 that is not 64 lowercase hex digits', () => {
    for (const sha of ['', 'A'.repeat(64), 'a'.repeat(63), '../'.padEnd(64, 'a')]) {
      expect(() => recordingKeyFor('call', sha, 'ogg')).toThrow(expect.objectContaining({ code: 'INVALID_KEY' }));
    }
  });
});

describe('assertRecordingKey', () => {
  it.each(['../x.ogg', 'a/b.ogg', '.ogg', 'x', 'x.ogg/', 'x..ogg', 'x.ogg\0', '..'])('refuses %j', (key) => {
    expect(() => assertRecordingKey(key)).toThrow(expect.objectContaining({ code: 'INVALID_KEY' }));
  });
});
