import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { scheduleRetry, type PollTimings } from '../../src/calls/fetch-plan.ts';

const SECOND = 1_000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const T: PollTimings = { pollInitialDelayMs: 30 * SECOND, pollMaxDelayMs: 30 * MINUTE, pollMaxWaitMs: 4 * HOUR };
const NOW = 1_700_000_000_000;
const FAR = NOW + 100 * HOUR;

/** random() = 0.5 puts the jitter factor at exactly 1. */
const middle = () => 0.5;
const lowest = () => 0;
const highest = () => 1 - Number.EPSILON;

function delay(failedAttempts: number, random: () => number, extra: { retryAfterMs?: number; deadlineAt?: number } = {}): number | null {
  const at = scheduleRetry({ failedAttempts, now: NOW, deadlineAt: extra.deadlineAt ?? FAR, retryAfterMs: extra.retryAfterMs, random, timings: T });
  return at === null ? null : at - NOW;
}

describe('scheduleRetry', () => {
  it.each<[number, number]>([
    [0, 30 * SECOND],
    [1, 60 * SECOND],
    [2, 120 * SECOND],
    [3, 240 * SECOND],
    [4, 480 * SECOND],
    [5, 960 * SECOND],
    [6, 30 * MINUTE],
    [7, 30 * MINUTE],
    [40, 30 * MINUTE],
    [1_000, 30 * MINUTE],
    [Number.MAX_SAFE_INTEGER, 30 * MINUTE],
  ])('after %i failed attempts, without jitter, waits %ims', (attempts, expected) => {
    expect(delay(attempts, middle)).toBe(expected);
  });

  it.each<[number, number, number]>([
    [1, 45 * SECOND, 75 * SECOND],
    [2, 90 * SECOND, 150 * SECOND],
    [4, 360 * SECOND, 600 * SECOND],
  ])('after %i failed attempts, jitters between %i and %i (±25%%)', (attempts, low, high) => {
    expect(delay(attempts, lowest)).toBe(low);
    expect(delay(attempts, highest)).toBe(high);
  });

  it('jitters only downwards at the cap', () => {
    expect(delay(10, lowest)).toBe(22.5 * MINUTE);
    expect(delay(10, highest)).toBe(30 * MINUTE);
    expect(delay(5, highest)).toBe(20 * MINUTE);
  });

  it.each<[string, number, number, number | null]>([
    ['longer than the backoff', 1, 5 * MINUTE, 5 * MINUTE],
    ['shorter than the backoff', 1, 10 * SECOND, 60 * SECOND],
    ['equal to the backoff', 2, 120 * SECOND, 120 * SECOND],
    ['above the cap', 1, 10 * HOUR, 30 * MINUTE],
    ['zero', 1, 0, 60 * SECOND],
  ])('honours a Retry-After %s', (_name, attempts, retryAfterMs, expected) => {
    expect(delay(attempts, middle, { retryAfterMs })).toBe(expected);
  });

  it('puts the last attempt on the deadline rather than giving up early', () => {
    expect(delay(1, middle, { deadlineAt: NOW + 10 * SECOND })).toBe(10 * SECOND);
    expect(delay(5, middle, { deadlineAt: NOW + 1 })).toBe(1);
    expect(delay(1, middle, { deadlineAt: NOW + 60 * SECOND })).toBe(60 * SECOND);
  });

  it('gives up once the deadline is reached or passed', () => {
    expect(delay(1, middle, { deadlineAt: NOW })).toBeNull();
    expect(delay(1, middle, { deadlineAt: NOW - 1 })).toBeNull();
    expect(delay(0, middle, { deadlineAt: NOW - HOUR, retryAfterMs: 1 })).toBeNull();
  });

  it('follows the configured timings', () => {
    const timings: PollTimings = { pollInitialDelayMs: 100, pollMaxDelayMs: 1_000, pollMaxWaitMs: 5_000 };
    const at = (failedAttempts: number) => scheduleRetry({ failedAttempts, now: 0, deadlineAt: 5_000, random: middle, timings });
    expect([0, 1, 2, 3, 4, 5].map(at)).toEqual([100, 200, 400, 800, 1_000, 1_000]);
  });

  describe('properties', () => {
    const timings = fc
      .record({
        pollInitialDelayMs: fc.integer({ min: 1, max: 10 * MINUTE }),
        pollMaxDelayMs: fc.integer({ min: 1, max: 2 * HOUR }),
        pollMaxWaitMs: fc.integer({ min: 1, max: 48 * HOUR }),
      });
    const randomValue = fc.oneof(
      fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
      fc.constantFrom(0, 0.5, 1 - Number.EPSILON),
    );
    const input = fc.record({
      failedAttempts: fc.oneof(fc.integer({ min: 0, max: 60 }), fc.integer({ min: 0, max: 1_000_000 })),
      now: fc.integer({ min: 0, max: 4_000_000_000_000 }),
      deadlineOffset: fc.integer({ min: -10 * HOUR, max: 50 * HOUR }),
      retryAfterMs: fc.option(fc.integer({ min: 0, max: 10 * HOUR }), { nil: undefined }),
      randomValue,
      timings,
    });

    it('is null exactly when the deadline has come, otherwise in (now, deadline] and at most now + max delay', () => {
      fc.assert(
        fc.property(input, ({ failedAttempts, now, deadlineOffset, retryAfterMs, randomValue: r, timings: t }) => {
          const deadlineAt = now + deadlineOffset;
          const at = scheduleRetry({ failedAttempts, now, deadlineAt, retryAfterMs, random: () => r, timings: t });
          if (deadlineAt <= now) {
            expect(at).toBeNull();
            return;
          }
          expect(at).not.toBeNull();
          expect(Number.isInteger(at)).toBe(true);
          expect(at!).toBeGreaterThan(now);
          expect(at!).toBeLessThanOrEqual(deadlineAt);
          expect(at!).toBeLessThanOrEqual(now + t.pollMaxDelayMs);
        }),
        { numRuns: 2000 },
      );
    });

    it('with random fixed, never waits less after more failed attempts', () => {
      fc.assert(
        fc.property(input, fc.integer({ min: 0, max: 60 }), ({ failedAttempts, now, retryAfterMs, randomValue: r, timings: t }, more) => {
          const deadlineAt = now + 100 * HOUR;
          const run = (attempts: number) =>
            scheduleRetry({ failedAttempts: attempts, now, deadlineAt, retryAfterMs, random: () => r, timings: t })!;
          expect(run(failedAttempts + more)).toBeGreaterThanOrEqual(run(failedAttempts));
        }),
        { numRuns: 1000 },
      );
    });

    it('stays within ±25% of the doubled delay, capped, when there is no Retry-After', () => {
      fc.assert(
        fc.property(input, ({ failedAttempts, now, randomValue: r, timings: t }) => {
          const at = scheduleRetry({ failedAttempts, now, deadlineAt: now + 100 * HOUR, random: () => r, timings: t })!;
          const nominal = Math.min(t.pollInitialDelayMs * 2 ** Math.min(failedAttempts, 60), t.pollMaxDelayMs);
          expect(at - now).toBeGreaterThanOrEqual(Math.floor(0.75 * nominal));
          expect(at - now).toBeLessThanOrEqual(Math.min(Math.ceil(1.25 * nominal), t.pollMaxDelayMs));
        }),
        { numRuns: 1000 },
      );
    });

    it('honours any Retry-After up to the cap', () => {
      fc.assert(
        fc.property(input, fc.integer({ min: 0, max: 10 * HOUR }), ({ failedAttempts, now, randomValue: r, timings: t }, retryAfterMs) => {
          const at = scheduleRetry({ failedAttempts, now, deadlineAt: now + 100 * HOUR, retryAfterMs, random: () => r, timings: t })!;
          expect(at - now).toBeGreaterThanOrEqual(Math.min(retryAfterMs, t.pollMaxDelayMs));
        }),
        { numRuns: 1000 },
      );
    });
  });
});
