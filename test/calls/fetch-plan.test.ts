import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { applyCallEvent, type CallRecord } from '../../src/calls/call-state.ts';
import { describeGiveUp, planFetch, planRetry, type FetchPlan, type PollTimings } from '../../src/calls/fetch-plan.ts';
import { callEvent, fold, recordEvent, withAttachment, type Step } from './call-events.ts';

const SECOND = 1_000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const T: PollTimings = { pollInitialDelayMs: 30 * SECOND, pollMaxDelayMs: 30 * MINUTE, pollMaxWaitMs: 4 * HOUR };
const NOW = 1_700_000_000_000;

/** The plan for the last step, given the record the earlier steps built. */
function planLast(steps: Step[], now = NOW, start: CallRecord | null = null): FetchPlan {
  const previous = steps.length > 1 ? fold(steps.slice(0, -1), start) : start;
  const [event, at] = steps[steps.length - 1]!;
  return planFetch(previous, applyCallEvent(previous, event, at), now, T);
}

const poll = (start: number): FetchPlan => ({ action: 'poll', runAt: start + 30 * SECOND, deadlineAt: start + 4 * HOUR });
const fetchNow = (now: number): FetchPlan => ({ action: 'fetch-now', runAt: now, deadlineAt: now + 4 * HOUR });

describe('planFetch', () => {
  it.each<[string, Step[], FetchPlan]>([
    ['READY as the first event → fetch now', [[recordEvent('READY'), NOW - 500]], fetchNow(NOW)],
    ['READY after MIXING → fetch now', [[recordEvent('MIXING'), 1_000], [recordEvent('READY'), 2_000]], fetchNow(NOW)],
    ['READY inside a CALL event → fetch now', [[callEvent({ status: 'ENDED', duration: 9, recordStatus: 'READY' }), 1_000]], fetchNow(NOW)],
    ['a duplicate READY → keep', [[recordEvent('READY'), 1_000], [recordEvent('READY'), 2_000]], { action: 'keep' }],
    ['MIXING after READY → keep', [[recordEvent('READY'), 1_000], [recordEvent('MIXING'), 2_000]], { action: 'keep' }],
    ['ENDED after READY → keep', [[recordEvent('READY'), 1_000], [callEvent({ status: 'ENDED', duration: 45 }), 2_000]],
      { action: 'keep' }],
    ['EMPTY_RECORDING after READY → keep (a file exists)', [[recordEvent('READY'), 1_000], [recordEvent('EMPTY_RECORDING'), 2_000]],
      { action: 'keep' }],
    ['first seen ACTIVE → poll from first seen', [[callEvent({ status: 'ACTIVE' }), 1_000]], poll(1_000)],
    ['first seen RECORDING → poll from first seen', [[recordEvent('RECORDING'), 7_000]], poll(7_000)],
    ['first seen ENDED with a duration → poll from the end', [[callEvent({ status: 'ENDED', duration: 45 }), 5_000]], poll(5_000)],
    ['ENDED after a first-seen poll → poll moves to the end',
      [[recordEvent('MIXING'), 1_000], [callEvent({ status: 'ENDED', duration: 45 }), 90_000]], poll(90_000)],
    ['ACTIVE then ENDED → poll moves to the end',
      [[callEvent({ status: 'ACTIVE', duration: 0 }), 1_000], [callEvent({ status: 'ENDED', duration: 0 }), 600_000]], poll(600_000)],
    ['a duplicate ENDED → keep', [[callEvent({ status: 'ENDED', duration: 45 }), 1_000], [callEvent({ status: 'ENDED', duration: 45 }), 9_000]],
      { action: 'keep' }],
    ['a second final status → keep', [[callEvent({ status: 'ENDED', duration: 45 }), 1_000], [callEvent({ status: 'REJECTED' }), 9_000]],
      { action: 'keep' }],
    ['MIXING after RECORDING → keep', [[recordEvent('RECORDING'), 1_000], [recordEvent('MIXING'), 2_000]], { action: 'keep' }],
    ['a CALL update without end → keep', [[callEvent({ status: 'ACTIVE' }), 1_000], [callEvent({ duration: 10 }), 2_000]], { action: 'keep' }],
    ['an unknown status → keep', [[recordEvent('MIXING'), 1_000], [recordEvent('WEIRD'), 2_000]], { action: 'keep' }],
    ['pending → EMPTY_RECORDING → cancel', [[recordEvent('MIXING'), 1_000], [recordEvent('EMPTY_RECORDING'), 2_000]], { action: 'cancel' }],
    ['pending → DISABLED → cancel', [[callEvent({ status: 'ACTIVE' }), 1_000], [recordEvent('DISABLED'), 2_000]], { action: 'cancel' }],
    ['pending → none → cancel',
      [[callEvent({ status: 'CALLING', duration: 0 }), 1_000], [callEvent({ status: 'NOT_ANSWERED', duration: 0 }), 2_000]],
      { action: 'cancel' }],
    ['first event EMPTY_RECORDING → keep (no job)', [[recordEvent('EMPTY_RECORDING'), 1_000]], { action: 'keep' }],
    ['first event DISABLED → keep', [[recordEvent('DISABLED'), 1_000]], { action: 'keep' }],
    ['first event ended unconnected → keep', [[callEvent({ status: 'ENDED', duration: 0 }), 1_000]], { action: 'keep' }],
    ['a second EMPTY_RECORDING → keep', [[recordEvent('EMPTY_RECORDING'), 1_000], [recordEvent('EMPTY_RECORDING'), 2_000]],
      { action: 'keep' }],
    ['none then READY → fetch now', [[callEvent({ status: 'ENDED', duration: 0 }), 1_000], [recordEvent('READY'), 2_000]], fetchNow(NOW)],
    ['none then MIXING → poll from the end',
      [[callEvent({ status: 'ENDED', duration: 0 }), 4_000], [recordEvent('MIXING'), 8_000]], poll(4_000)],
    ['empty then READY → fetch now', [[recordEvent('EMPTY_RECORDING'), 1_000], [recordEvent('READY'), 2_000]], fetchNow(NOW)],
  ])('%s', (_name, steps, expected) => {
    expect(planLast(steps)).toEqual(expected);
  });

  it('fetch-now runs at the time of processing, not at the time of receipt', () => {
    expect(planLast([[recordEvent('READY'), 10]], 99_999)).toEqual(fetchNow(99_999));
  });

  it('a poll does not depend on the time of processing', () => {
    const steps: Step[] = [[recordEvent('MIXING'), 1_000]];
    expect(planLast(steps, 5_000)).toEqual(planLast(steps, 50_000_000));
  });

  it('follows the configured timings', () => {
    const timings: PollTimings = { pollInitialDelayMs: 500, pollMaxDelayMs: 2_000, pollMaxWaitMs: 9_000 };
    const mixing = applyCallEvent(null, recordEvent('MIXING'), 100);
    expect(planFetch(null, mixing, 0, timings)).toEqual({ action: 'poll', runAt: 600, deadlineAt: 9_100 });
    const ready = applyCallEvent(mixing, recordEvent('READY'), 200);
    expect(planFetch(mixing, ready, 300, timings)).toEqual({ action: 'fetch-now', runAt: 300, deadlineAt: 9_300 });
  });

  describe('after a download outcome', () => {
    const waiting = fold([[recordEvent('MIXING'), 1_000]]);
    const ready = fold([[recordEvent('READY'), 1_000]]);

    it.each<[string, CallRecord, Step, FetchPlan]>([
      ['failed + MIXING → keep', withAttachment(waiting, 'failed', 'gave up'), [recordEvent('MIXING'), 2_000], { action: 'keep' }],
      ['failed + ENDED → keep', withAttachment(waiting, 'failed', 'gave up'), [callEvent({ status: 'ENDED', duration: 5 }), 2_000],
        { action: 'keep' }],
      ['failed + duplicate READY → keep', withAttachment(ready, 'failed', 'not audio'), [recordEvent('READY'), 2_000], { action: 'keep' }],
      ['failed + first READY → fetch now', withAttachment(waiting, 'failed', 'gave up'), [recordEvent('READY'), 2_000], fetchNow(NOW)],
      ['failed + EMPTY_RECORDING → keep', withAttachment(waiting, 'failed', 'gave up'), [recordEvent('EMPTY_RECORDING'), 2_000],
        { action: 'keep' }],
      ['attached + READY → keep', withAttachment(ready, 'attached', null), [recordEvent('READY'), 2_000], { action: 'keep' }],
      ['attached + ENDED → keep', withAttachment(ready, 'attached', null), [callEvent({ status: 'ENDED', duration: 5 }), 2_000],
        { action: 'keep' }],
      ['attached + DISABLED → keep', withAttachment(waiting, 'attached', null), [recordEvent('DISABLED'), 2_000], { action: 'keep' }],
      ['expired + READY → keep', withAttachment(ready, 'expired', 'deleted'), [recordEvent('READY'), 2_000], { action: 'keep' }],
    ])('%s', (_name, previous, [event, at], expected) => {
      expect(planFetch(previous, applyCallEvent(previous, event, at), NOW, T)).toEqual(expected);
    });
  });

  it('over any sequence of events: one fetch-now exactly when READY came, polls on the right clock, cancel only from pending', () => {
    const event = fc.oneof(
      fc.constantFrom('READY', 'MIXING', 'RECORDING', 'EMPTY_RECORDING', 'DISABLED', 'WEIRD').map((status) => recordEvent(status)),
      fc.record({
        status: fc.constantFrom('ACTIVE', 'ENDED', 'CALLING', 'REJECTED', null),
        duration: fc.constantFrom(0, 30, null),
      }).map((fields) => callEvent(fields)),
    );
    const sequence = fc.array(fc.tuple(event, fc.integer({ min: 0, max: 1e7 })), { minLength: 1, maxLength: 10 });
    fc.assert(
      fc.property(sequence, (steps) => {
        let previous: CallRecord | null = null;
        let fetches = 0;
        for (const [event, at] of steps) {
          const next = applyCallEvent(previous, event, at);
          const plan = planFetch(previous, next, NOW, T);
          if (plan.action === 'fetch-now') {
            fetches += 1;
            expect(plan).toEqual(fetchNow(NOW));
          }
          if (plan.action === 'poll') {
            expect(next.recordStatus).not.toBe('READY');
            expect(plan).toEqual(poll(next.endedAt ?? next.firstSeenAt));
          }
          if (plan.action === 'cancel') {
            expect(previous?.attachment.state).toBe('pending');
            expect(next.attachment.state).not.toBe('pending');
          }
          if (next.attachment.state !== 'pending') expect(['keep', 'cancel']).toContain(plan.action);
          previous = next;
        }
        expect(fetches).toBe(steps.some(([event]) => event.recordStatus === 'READY') ? 1 : 0);
      }),
      { numRuns: 500 },
    );
  });
});

describe('planRetry', () => {
  it.each([[0], [NOW], [123_456]])('fetches at once from %i with a fresh deadline', (now) => {
    expect(planRetry(now, T)).toEqual({ action: 'fetch-now', runAt: now, deadlineAt: now + 4 * HOUR });
  });

  it('uses the configured maximum wait', () => {
    expect(planRetry(10, { pollInitialDelayMs: 1, pollMaxDelayMs: 2, pollMaxWaitMs: 90_000 })).toEqual({
      action: 'fetch-now',
      runAt: 10,
      deadlineAt: 90_010,
    });
  });
});

describe('describeGiveUp', () => {
  it.each<[number, string]>([
    [4 * HOUR, '4h'],
    [90 * MINUTE, '90m'],
    [90 * SECOND, '90s'],
    [2_500, '2500ms'],
    [24 * HOUR, '1d'],
  ])('mentions a wait of %ims as %s and the last error', (wait, text) => {
    const message = describeGiveUp({ ...T, pollMaxWaitMs: wait }, 'HTTP 404 Not Found');
    expect(message).toContain(text);
    expect(message).toContain('HTTP 404 Not Found');
    expect(message).toMatch(/not available in time/);
  });

  it('gives the default wording', () => {
    expect(describeGiveUp(T, 'timeout after 30s')).toBe(
      'recording not available in time: gave up after 4h of retries (last error: timeout after 30s)',
    );
  });

  it('says the storage was the trouble when our own disk failed the last attempt', () => {
    expect(describeGiveUp(T, 'Recording storage is full (no space left on device)', 'storage')).toBe(
      'recording could not be stored in time: gave up after 4h of retries (last error: Recording storage is full (no space left on device))',
    );
  });
});
