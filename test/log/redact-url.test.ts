import { describe, expect, it } from 'vitest';
import { redactUrl } from '../../src/log/logger.ts';

describe('redactUrl', () => {
  it.each([
    ['/webhooks/wavoip?token=s3cret', '/webhooks/wavoip?token=[redacted]'],
    ['https://h/webhooks/wavoip?a=1&token=s3cret&b=2', 'https://h/webhooks/wavoip?a=1&token=[redacted]&b=2'],
    ['/x?TOKEN=s3cret', '/x?TOKEN=[redacted]'],
    ['/x?%74oken=s3cret', '/x?%74oken=[redacted]'],
    ['/x?device_token=s3cret#frag', '/x?device_token=[redacted]#frag'],
    ['/x?token=a&token=b', '/x?token=[redacted]&token=[redacted]'],
    ['/x?tokens=keep', '/x?tokens=keep'],
    ['/x?%ZZ=keep', '/x?%ZZ=keep'],
    ['/x', '/x'],
    ['https://user:s3cret@h/x', 'https://[redacted]@h/x'],
    ['https://s3cret@h/x?token=t', 'https://[redacted]@h/x?token=[redacted]'],
    ['https://h/x?next=a@b', 'https://h/x?next=a@b'],
  ])('%s → %s', (url, expected) => {
    expect(redactUrl(url)).toBe(expected);
  });
});
