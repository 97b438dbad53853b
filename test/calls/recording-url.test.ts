import { describe, expect, it } from 'vitest';
import { recordingUrlForAttempt } from '../../src/calls/recording.ts';

const TEMPLATE = 'https://storage.wavoip.com/123456';
const HINT = 'https://cdn.wavoip.com/rec/123456.ogg';
const READY_URL = 'https://storage.wavoip.com/ready/123456';

describe('recordingUrlForAttempt', () => {
  const choose = (over: Partial<Parameters<typeof recordingUrlForAttempt>[0]>) =>
    recordingUrlForAttempt({ recordUrl: null, hintedUrl: null, templateUrl: TEMPLATE, hintAllowed: true, attempt: 1, ...over });

  it('READY’s record_url is the recording’s: every attempt takes it, hint or not', () => {
    for (const attempt of [1, 2, 3]) {
      expect(choose({ recordUrl: READY_URL, hintedUrl: HINT, attempt })).toEqual({ url: READY_URL, hinted: false, alternating: false });
    }
  });

  it('without a hint, every attempt takes the template URL', () => {
    for (const attempt of [1, 2, 3]) expect(choose({ attempt })).toEqual({ url: TEMPLATE, hinted: false, alternating: false });
  });

  it('with a hint, the hint first, then the template, alternately', () => {
    expect([1, 2, 3, 4, 5].map((attempt) => choose({ hintedUrl: HINT, attempt }).url)).toEqual([HINT, TEMPLATE, HINT, TEMPLATE, HINT]);
    expect(choose({ hintedUrl: HINT, attempt: 1 })).toEqual({ url: HINT, hinted: true, alternating: true });
    expect(choose({ hintedUrl: HINT, attempt: 2 })).toEqual({ url: TEMPLATE, hinted: false, alternating: true });
  });

  it('a hint the allow-list refuses is never fetched', () => {
    for (const attempt of [1, 2]) {
      expect(choose({ hintedUrl: 'http://10.0.0.1/x', hintAllowed: false, attempt })).toEqual({ url: TEMPLATE, hinted: false, alternating: false });
    }
  });

  it('a hint that is the template URL itself is no second place', () => {
    expect(choose({ hintedUrl: TEMPLATE, attempt: 1 })).toEqual({ url: TEMPLATE, hinted: false, alternating: false });
  });
});
