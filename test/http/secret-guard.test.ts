import { Writable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createLogger } from '../../src/log/logger.ts';
import { SECRET_FAILURE_WINDOW_SECONDS, createSecretGuard } from '../../src/http/secret-guard.ts';

/**
 * The lock-out's clock. The integration tests (test/integration/auth-lockout.test.ts) show the
 * lock-out through HTTP; waiting out a real minute there would be slow, so time is moved here.
 */
const RIGHT = 'the-right-token-0123456789abcdef';
const WINDOW_MS = SECRET_FAILURE_WINDOW_SECONDS * 1000;

function guard(lockOutRightSecrets: boolean) {
  const warnings: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      warnings.push(JSON.parse(chunk.toString('utf8')).msg);
      done();
    },
  });
  const logger = createLogger({ logFormat: 'json', logLevel: 'warn' }, sink);
  return { guard: createSecretGuard({ maxFailures: 3, lockOutRightSecrets, what: 'API', logger }), warnings };
}

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['Date', 'setTimeout', 'clearTimeout'] });
});
afterEach(() => {
  vi.useRealTimers();
});

describe('the lock-out after repeated wrong tokens', () => {
  it('ends when the window has passed: the right token works again, and wrong ones are counted afresh', async () => {
    const { guard: api, warnings } = guard(true);
    for (let attempt = 0; attempt < 3; attempt++) expect(await api.check('203.0.113.9', 'wrong', RIGHT)).toEqual({ result: 'wrong' });
    expect(await api.check('203.0.113.9', 'wrong', RIGHT)).toEqual({ result: 'locked-out', retryAfterSeconds: SECRET_FAILURE_WINDOW_SECONDS });
    expect(warnings).toHaveLength(1);

    vi.advanceTimersByTime(WINDOW_MS / 2);
    expect(await api.check('203.0.113.9', RIGHT, RIGHT)).toEqual({ result: 'locked-out', retryAfterSeconds: SECRET_FAILURE_WINDOW_SECONDS / 2 });
    // Another address was never locked out.
    expect(await api.check('203.0.113.10', RIGHT, RIGHT)).toEqual({ result: 'ok' });

    vi.advanceTimersByTime(WINDOW_MS / 2 + 1);
    expect(await api.check('203.0.113.9', RIGHT, RIGHT)).toEqual({ result: 'ok' });
    for (let attempt = 0; attempt < 3; attempt++) expect(await api.check('203.0.113.9', 'wrong', RIGHT)).toEqual({ result: 'wrong' });
    expect((await api.check('203.0.113.9', 'wrong', RIGHT)).result).toBe('locked-out');
    expect(warnings).toHaveLength(2);
  });

  it('counts wrong tokens afresh in each window, so occasional mistakes never add up to a lock-out', async () => {
    const { guard: api } = guard(true);
    for (let minute = 0; minute < 5; minute++) {
      for (let attempt = 0; attempt < 3; attempt++) expect(await api.check('198.51.100.7', 'wrong', RIGHT)).toEqual({ result: 'wrong' });
      vi.advanceTimersByTime(WINDOW_MS + 1);
    }
    expect(await api.check('198.51.100.7', RIGHT, RIGHT)).toEqual({ result: 'ok' });
  });

  it('counts an IPv6 client per /64, and lets a webhook sender with the right token through while locked out', async () => {
    const { guard: webhooks } = guard(false);
    for (let host = 1; host <= 3; host++) expect(await webhooks.check(`2001:db8:1:2::${host}`, 'wrong', RIGHT)).toEqual({ result: 'wrong' });
    expect((await webhooks.check('2001:db8:1:2:ffff::9', 'wrong', RIGHT)).result).toBe('locked-out');
    expect(await webhooks.check('2001:db8:1:2::4', RIGHT, RIGHT)).toEqual({ result: 'ok' });
    expect(await webhooks.check('2001:db8:1:3::1', 'wrong', RIGHT)).toEqual({ result: 'wrong' });
    vi.advanceTimersByTime(WINDOW_MS + 1);
    expect(await webhooks.check('2001:db8:1:2::5', 'wrong', RIGHT)).toEqual({ result: 'wrong' });
  });
});
