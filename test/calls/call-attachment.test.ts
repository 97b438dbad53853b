import { describe, expect, it } from 'vitest';
import {
  applyCallEvent,
  becameReady,
  expectedAttachmentState,
  isCallEnded,
  nextAttachment,
  type AttachmentState,
  type CallFacts,
} from '../../src/calls/call-state.ts';
import { callEvent, facts, fold, recordEvent, withAttachment } from './call-events.ts';

describe('expectedAttachmentState', () => {
  it.each<[string, Partial<CallFacts>, 'pending' | 'empty' | 'disabled' | 'none']>([
    ['nothing known', {}, 'pending'],
    ['RECORDING', { recordStatus: 'RECORDING' }, 'pending'],
    ['MIXING', { recordStatus: 'MIXING' }, 'pending'],
    ['READY', { recordStatus: 'READY' }, 'pending'],
    ['unknown record status', { recordStatus: 'SOMETHING' }, 'pending'],
    ['EMPTY_RECORDING', { recordStatus: 'EMPTY_RECORDING' }, 'empty'],
    ['DISABLED', { recordStatus: 'DISABLED' }, 'disabled'],
    ['EMPTY_RECORDING on an ended unconnected call', { recordStatus: 'EMPTY_RECORDING', endedAt: 5, duration: 0 }, 'empty'],
    ['DISABLED on a connected call', { recordStatus: 'DISABLED', wasConnected: true, duration: 60 }, 'disabled'],
    ['ended, never connected, duration 0', { status: 'ENDED', endedAt: 5, duration: 0 }, 'none'],
    ['ended, never connected, no duration', { status: 'ENDED', endedAt: 5, duration: null }, 'none'],
    ['ended, connected, duration 0', { status: 'ENDED', endedAt: 5, duration: 0, wasConnected: true }, 'pending'],
    ['ended, never connected, duration 1', { status: 'ENDED', endedAt: 5, duration: 1 }, 'pending'],
    ['ended, never connected, duration 0.5', { status: 'ENDED', endedAt: 5, duration: 0.5 }, 'pending'],
    ['not ended, duration 0', { status: 'CALLING', duration: 0 }, 'pending'],
    ['ended, duration 0, a record status announced', { status: 'ENDED', endedAt: 5, duration: 0, recordStatus: 'MIXING' }, 'pending'],
    ['ended, duration 0, READY', { status: 'ENDED', endedAt: 5, duration: 0, recordStatus: 'READY' }, 'pending'],
  ])('%s → %s', (_name, over, expected) => {
    expect(expectedAttachmentState(facts(over))).toBe(expected);
  });

  it('isCallEnded follows endedAt', () => {
    expect(isCallEnded(facts({ endedAt: null, status: 'ENDED' }))).toBe(false);
    expect(isCallEnded(facts({ endedAt: 0 }))).toBe(true);
    expect(isCallEnded(facts({ endedAt: 10 }))).toBe(true);
  });
});

describe('becameReady', () => {
  it.each<[string, Partial<CallFacts> | null, string | null, boolean]>([
    ['first event READY', null, 'READY', true],
    ['MIXING → READY', { recordStatus: 'MIXING' }, 'READY', true],
    ['unknown → READY', { recordStatus: 'X' }, 'READY', true],
    ['EMPTY_RECORDING → READY', { recordStatus: 'EMPTY_RECORDING' }, 'READY', true],
    ['no status → READY', { recordStatus: null }, 'READY', true],
    ['READY → READY', { recordStatus: 'READY' }, 'READY', false],
    ['first event MIXING', null, 'MIXING', false],
    ['RECORDING → MIXING', { recordStatus: 'RECORDING' }, 'MIXING', false],
    ['READY → no status', { recordStatus: 'READY' }, null, false],
  ])('%s → %s', (_name, previous, next, expected) => {
    expect(becameReady(previous === null ? null : facts(previous), facts({ recordStatus: next }))).toBe(expected);
  });
});

describe('nextAttachment', () => {
  const pending = fold([[recordEvent('MIXING'), 1]]);
  const ready = fold([[recordEvent('READY'), 1]]);

  it('starts from what the facts imply when there is no previous record', () => {
    expect(nextAttachment(null, facts({ recordStatus: 'DISABLED' }))).toEqual({ state: 'disabled', reason: null });
    expect(nextAttachment(null, facts({ recordStatus: 'READY' }))).toEqual({ state: 'pending', reason: null });
  });

  it('follows the facts from pending', () => {
    expect(nextAttachment(pending, { ...pending, recordStatus: 'EMPTY_RECORDING' })).toEqual({ state: 'empty', reason: null });
    expect(nextAttachment(pending, { ...pending, recordStatus: 'READY' })).toEqual({ state: 'pending', reason: null });
  });

  describe('attached is final whatever comes next', () => {
    const attached = withAttachment(ready, 'attached', null);
    it.each([
      ['MIXING', recordEvent('MIXING')],
      ['READY again', recordEvent('READY')],
      ['EMPTY_RECORDING', recordEvent('EMPTY_RECORDING')],
      ['DISABLED', recordEvent('DISABLED')],
      ['ENDED, never connected, duration 0', callEvent({ status: 'ENDED', duration: 0 })],
      ['unknown status', recordEvent('WEIRD')],
    ])('%s', (_name, event) => {
      const next = applyCallEvent(attached, event, 50);
      expect(next.attachment).toEqual({ state: 'attached', reason: null });
    });

    it('keeps the same attachment through many events', () => {
      let record = withAttachment(fold([[callEvent({ status: 'ACTIVE' }), 1]]), 'attached', 'kept');
      for (const event of [recordEvent('READY'), recordEvent('DISABLED'), callEvent({ status: 'ENDED', duration: 0 })]) {
        record = applyCallEvent(record, event, 2);
        expect(record.attachment).toEqual({ state: 'attached', reason: 'kept' });
      }
    });
  });

  describe('failed', () => {
    const reason = 'recording not available in time';
    const failedWaiting = withAttachment(pending, 'failed', reason);
    const failedAfterReady = withAttachment(ready, 'failed', 'not audio');

    it.each<[string, ReturnType<typeof withAttachment>, Parameters<typeof applyCallEvent>[1], AttachmentState, string | null]>([
      ['stays failed on MIXING', failedWaiting, recordEvent('MIXING'), 'failed', reason],
      ['stays failed on RECORDING', failedWaiting, recordEvent('RECORDING'), 'failed', reason],
      ['stays failed on an unknown status', failedWaiting, recordEvent('WEIRD'), 'failed', reason],
      ['stays failed on a CALL update', failedWaiting, callEvent({ status: 'ENDED', duration: 45 }), 'failed', reason],
      ['goes pending on a first READY', failedWaiting, recordEvent('READY'), 'pending', null],
      ['goes pending on a CALL carrying a first READY', failedWaiting, callEvent({ recordStatus: 'READY' }), 'pending', null],
      ['goes empty on EMPTY_RECORDING', failedWaiting, recordEvent('EMPTY_RECORDING'), 'empty', null],
      ['goes disabled on DISABLED', failedWaiting, recordEvent('DISABLED'), 'disabled', null],
      ['stays failed on a duplicate READY', failedAfterReady, recordEvent('READY'), 'failed', 'not audio'],
      ['stays failed on MIXING after READY', failedAfterReady, recordEvent('MIXING'), 'failed', 'not audio'],
      ['stays failed on EMPTY_RECORDING after READY', failedAfterReady, recordEvent('EMPTY_RECORDING'), 'failed', 'not audio'],
    ])('%s', (_name, previous, event, state, expectedReason) => {
      expect(applyCallEvent(previous, event, 60).attachment).toEqual({ state, reason: expectedReason });
    });
  });

  it.each<[AttachmentState]>([['empty'], ['disabled'], ['none']])('a later READY turns %s into pending', (state) => {
    const previous = withAttachment(fold([[callEvent({ status: 'ENDED', duration: 0 }), 1]]), state, null);
    expect(applyCallEvent(previous, recordEvent('READY'), 2).attachment).toEqual({ state: 'pending', reason: null });
  });
});
