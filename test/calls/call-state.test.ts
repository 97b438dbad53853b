import { describe, expect, it } from 'vitest';
import { applyCallEvent, mergeCallEvent, type AttachmentState } from '../../src/calls/call-state.ts';
import { CALL_ID, callEvent, deepFreeze, fold, recordEvent, type Step } from './call-events.ts';

const ended = (over: Parameters<typeof callEvent>[0] = {}) => callEvent({ status: 'ENDED', ...over });

describe('applyCallEvent: transition table', () => {
  const cases: Array<[string, Step[], { recordStatus: string | null; status?: string | null; state: AttachmentState }]> = [
    ['RECORDING', [[recordEvent('RECORDING'), 1]], { recordStatus: 'RECORDING', state: 'pending' }],
    ['RECORDING → MIXING', [[recordEvent('RECORDING'), 1], [recordEvent('MIXING'), 2]], { recordStatus: 'MIXING', state: 'pending' }],
    ['RECORDING → MIXING → READY', [[recordEvent('RECORDING'), 1], [recordEvent('MIXING'), 2], [recordEvent('READY'), 3]],
      { recordStatus: 'READY', state: 'pending' }],
    ['READY → MIXING (late MIXING changes nothing)', [[recordEvent('READY'), 1], [recordEvent('MIXING'), 2]],
      { recordStatus: 'READY', state: 'pending' }],
    ['READY → RECORDING', [[recordEvent('READY'), 1], [recordEvent('RECORDING'), 2]], { recordStatus: 'READY', state: 'pending' }],
    ['MIXING → RECORDING', [[recordEvent('MIXING'), 1], [recordEvent('RECORDING'), 2]], { recordStatus: 'MIXING', state: 'pending' }],
    ['READY before ENDED', [[recordEvent('READY'), 1], [ended({ duration: 45 }), 2]],
      { recordStatus: 'READY', status: 'ENDED', state: 'pending' }],
    ['ENDED before READY', [[ended({ duration: 45 }), 1], [recordEvent('READY'), 2]],
      { recordStatus: 'READY', status: 'ENDED', state: 'pending' }],
    ['RECORD before CALL', [[recordEvent('MIXING'), 1], [callEvent({ status: 'ACTIVE' }), 2]],
      { recordStatus: 'MIXING', status: 'ACTIVE', state: 'pending' }],
    ['EMPTY_RECORDING', [[recordEvent('EMPTY_RECORDING'), 1]], { recordStatus: 'EMPTY_RECORDING', state: 'empty' }],
    ['DISABLED', [[recordEvent('DISABLED'), 1]], { recordStatus: 'DISABLED', state: 'disabled' }],
    ['RECORDING → EMPTY_RECORDING', [[recordEvent('RECORDING'), 1], [recordEvent('EMPTY_RECORDING'), 2]],
      { recordStatus: 'EMPTY_RECORDING', state: 'empty' }],
    ['MIXING → DISABLED', [[recordEvent('MIXING'), 1], [recordEvent('DISABLED'), 2]], { recordStatus: 'DISABLED', state: 'disabled' }],
    ['EMPTY_RECORDING → MIXING', [[recordEvent('EMPTY_RECORDING'), 1], [recordEvent('MIXING'), 2]],
      { recordStatus: 'EMPTY_RECORDING', state: 'empty' }],
    ['READY then EMPTY_RECORDING: a file exists', [[recordEvent('READY'), 1], [recordEvent('EMPTY_RECORDING'), 2]],
      { recordStatus: 'READY', state: 'pending' }],
    ['EMPTY_RECORDING then READY: a file exists', [[recordEvent('EMPTY_RECORDING'), 1], [recordEvent('READY'), 2]],
      { recordStatus: 'READY', state: 'pending' }],
    ['DISABLED then READY', [[recordEvent('DISABLED'), 1], [recordEvent('READY'), 2]], { recordStatus: 'READY', state: 'pending' }],
    ['ENDED, never ACTIVE, duration 0 → none', [[ended({ duration: 0 }), 1]], { recordStatus: null, status: 'ENDED', state: 'none' }],
    ['CALLING then ENDED, duration 0 → none', [[callEvent({ status: 'CALLING', duration: 0 }), 1], [ended({ duration: 0 }), 2]],
      { recordStatus: null, status: 'ENDED', state: 'none' }],
    ['REJECTED → none', [[callEvent({ status: 'REJECTED', duration: 0 }), 1]], { recordStatus: null, state: 'none' }],
    ['NOT_ANSWERED → none', [[callEvent({ status: 'NOT_ANSWERED', duration: 0 }), 1]], { recordStatus: null, state: 'none' }],
    ['FAILED → none', [[callEvent({ status: 'FAILED', duration: 0 }), 1]], { recordStatus: null, state: 'none' }],
    ['HANDLED_REMOTELY → none', [[callEvent({ status: 'HANDLED_REMOTELY', duration: 0 }), 1]], { recordStatus: null, state: 'none' }],
    ['none, then RECORD READY wins', [[ended({ duration: 0 }), 1], [recordEvent('READY'), 2]], { recordStatus: 'READY', state: 'pending' }],
    ['none, then RECORD MIXING wins', [[ended({ duration: 0 }), 1], [recordEvent('MIXING'), 2]], { recordStatus: 'MIXING', state: 'pending' }],
    ['none, then EMPTY_RECORDING', [[ended({ duration: 0 }), 1], [recordEvent('EMPTY_RECORDING'), 2]],
      { recordStatus: 'EMPTY_RECORDING', state: 'empty' }],
    ['none, then DISABLED', [[ended({ duration: 0 }), 1], [recordEvent('DISABLED'), 2]], { recordStatus: 'DISABLED', state: 'disabled' }],
    ['RECORD READY before a never-connected ENDED', [[recordEvent('READY'), 1], [ended({ duration: 0 }), 2]],
      { recordStatus: 'READY', state: 'pending' }],
    ['ENDED duration 0 with a record_status in the CALL', [[ended({ duration: 0, recordStatus: 'RECORDING' }), 1]],
      { recordStatus: 'RECORDING', state: 'pending' }],
    ['ACTIVE then ENDED, duration 0 → pending', [[callEvent({ status: 'ACTIVE', duration: 0 }), 1], [ended({ duration: 0 }), 2]],
      { recordStatus: null, status: 'ENDED', state: 'pending' }],
    ['ENDED then a late ACTIVE → pending', [[ended({ duration: 0 }), 1], [callEvent({ status: 'ACTIVE' }), 2]],
      { recordStatus: null, status: 'ENDED', state: 'pending' }],
    ['ENDED with a duration, never ACTIVE → pending', [[ended({ duration: 45 }), 1]], { recordStatus: null, state: 'pending' }],
    ['ENDED duration 0, later duration 12 → pending', [[ended({ duration: 0 }), 1], [callEvent({ duration: 12 }), 2]],
      { recordStatus: null, state: 'pending' }],
    ['ringing, not ended → pending', [[callEvent({ status: 'INCOMING_RING', duration: 0 }), 1]], { recordStatus: null, state: 'pending' }],
    ['CONNECTION_LOST, not final → pending', [[callEvent({ status: 'CONNECTION_LOST', duration: 0 }), 1]],
      { recordStatus: null, state: 'pending' }],
    ['unknown record status kept', [[recordEvent('TRANSCODING'), 1]], { recordStatus: 'TRANSCODING', state: 'pending' }],
    ['unknown then MIXING', [[recordEvent('TRANSCODING'), 1], [recordEvent('MIXING'), 2]], { recordStatus: 'MIXING', state: 'pending' }],
    ['MIXING then unknown', [[recordEvent('MIXING'), 1], [recordEvent('TRANSCODING'), 2]], { recordStatus: 'MIXING', state: 'pending' }],
    ['READY then unknown', [[recordEvent('READY'), 1], [recordEvent('WHATEVER'), 2]], { recordStatus: 'READY', state: 'pending' }],
    ['unknown call status kept', [[callEvent({ status: 'ON_HOLD' }), 1]], { recordStatus: null, status: 'ON_HOLD', state: 'pending' }],
    ['ENDED then unknown call status', [[ended(), 1], [callEvent({ status: 'ON_HOLD' }), 2]], { recordStatus: null, status: 'ENDED', state: 'none' }],
    ['ENDED then ACTIVE keeps ENDED', [[ended({ duration: 30 }), 1], [callEvent({ status: 'ACTIVE' }), 2]],
      { recordStatus: null, status: 'ENDED', state: 'pending' }],
    ['UPDATE without status keeps the status', [[callEvent({ status: 'ACTIVE' }), 1], [callEvent({ caller: '55' }), 2]],
      { recordStatus: null, status: 'ACTIVE', state: 'pending' }],
  ];

  it.each(cases)('%s', (_name, steps, expected) => {
    const record = fold(steps);
    expect(record.recordStatus).toBe(expected.recordStatus);
    if (expected.status !== undefined) expect(record.status).toBe(expected.status);
    expect(record.attachment).toEqual({ state: expected.state, reason: null });
  });

  it('MIXING after READY changes nothing but the last-seen time', () => {
    const ready = fold([[recordEvent('RECORDING'), 1], [recordEvent('READY', { recordUrl: 'https://storage.wavoip.com/1' }), 2]]);
    const after = applyCallEvent(ready, recordEvent('MIXING'), 3);
    expect(after).toEqual({ ...ready, lastSeenAt: 3 });
  });

  it('a duplicate event changes nothing but the last-seen time', () => {
    const event = callEvent({ status: 'ENDED', duration: 45, caller: '55', receiver: '66', direction: 'INCOMING', recordStatus: 'MIXING' });
    const once = fold([[event, 10]]);
    expect(applyCallEvent(once, event, 10)).toEqual(once);
    expect(applyCallEvent(once, event, 99)).toEqual({ ...once, lastSeenAt: 99 });
  });

  it('builds the whole record from a RECORD that arrives before its CALL', () => {
    const record = fold([
      [recordEvent('READY', { recordUrl: 'https://storage.wavoip.com/123456', deviceId: '789' }), 1_000],
      [callEvent({ status: 'ENDED', direction: 'INCOMING', caller: '5511911112222', receiver: '5511933334444', duration: 45 }), 2_000],
    ]);
    expect(record).toEqual({
      callId: CALL_ID,
      direction: 'INCOMING',
      caller: '5511911112222',
      receiver: '5511933334444',
      deviceId: '789',
      status: 'ENDED',
      wasConnected: false,
      duration: 45,
      recordStatus: 'READY',
      recordUrl: 'https://storage.wavoip.com/123456',
      hintedUrl: null,
      statusesSeen: ['ENDED'],
      activeAt: null,
      callType: null,
      peerName: null,
      statedPeerPhone: null,
      deviceReportedPhone: null,
      firstSeenAt: 1_000,
      lastSeenAt: 2_000,
      endedAt: 2_000,
      attachment: { state: 'pending', reason: null },
    });
  });
});

describe('mergeCallEvent', () => {
  it('creates facts from a first CALL event', () => {
    const event = callEvent({
      status: 'ACTIVE', recordStatus: 'RECORDING', direction: 'INCOMING', caller: '55', receiver: '66', deviceId: '789', duration: 3,
    });
    expect(mergeCallEvent(null, event, 500)).toEqual({
      callId: CALL_ID, direction: 'INCOMING', caller: '55', receiver: '66', deviceId: '789', status: 'ACTIVE', wasConnected: true,
      duration: 3, recordStatus: 'RECORDING', recordUrl: null, firstSeenAt: 500, lastSeenAt: 500, endedAt: null,
      hintedUrl: null, statusesSeen: [], activeAt: 500, callType: null, peerName: null, statedPeerPhone: null, deviceReportedPhone: null,
    });
  });

  it('creates facts from a first RECORD event without call fields', () => {
    expect(mergeCallEvent(null, recordEvent('READY', { recordUrl: 'https://x/1', deviceId: '7' }), 42)).toEqual({
      callId: CALL_ID, direction: null, caller: null, receiver: null, deviceId: '7', status: null, wasConnected: false,
      duration: null, recordStatus: 'READY', recordUrl: 'https://x/1', firstSeenAt: 42, lastSeenAt: 42, endedAt: null,
      hintedUrl: null, statusesSeen: [], activeAt: null, callType: null, peerName: null, statedPeerPhone: null, deviceReportedPhone: null,
    });
  });

  it('keeps the earliest first-seen and latest last-seen, whatever the order of arrival times', () => {
    const facts = [
      [callEvent({ status: 'ACTIVE' }), 5_000],
      [recordEvent('RECORDING'), 1_000],
      [recordEvent('MIXING'), 9_000],
      [recordEvent('MIXING'), 3_000],
    ].reduce<ReturnType<typeof mergeCallEvent> | null>(
      (acc, [event, at]) => mergeCallEvent(acc, event as ReturnType<typeof callEvent>, at as number), null,
    );
    expect(facts).toMatchObject({ firstSeenAt: 1_000, lastSeenAt: 9_000 });
  });

  it('sets endedAt from the first final status and never moves it later', () => {
    let facts = mergeCallEvent(null, callEvent({ status: 'ACTIVE' }), 100);
    expect(facts.endedAt).toBeNull();
    facts = mergeCallEvent(facts, callEvent({ status: 'ENDED' }), 200);
    expect(facts.endedAt).toBe(200);
    facts = mergeCallEvent(facts, callEvent({ status: 'ENDED' }), 300);
    expect(facts.endedAt).toBe(200);
    facts = mergeCallEvent(facts, callEvent({ status: 'REJECTED' }), 400);
    expect(facts.endedAt).toBe(200);
    expect(mergeCallEvent(facts, callEvent({ status: 'ENDED' }), 150).endedAt).toBe(150);
  });

  it('does not set endedAt from a RECORD event, nor from a non-final status', () => {
    let facts = mergeCallEvent(null, recordEvent('READY'), 1);
    for (const status of ['CONNECTION_LOST', 'ACTIVE', 'CALLING', 'SOMETHING']) {
      facts = mergeCallEvent(facts, callEvent({ status }), 2);
    }
    expect(facts.endedAt).toBeNull();
  });

  it('never erases a known value with a missing one', () => {
    let facts = mergeCallEvent(null, callEvent({
      status: 'ACTIVE', direction: 'OUTCOMING', caller: '55', receiver: '66', deviceId: '9', duration: 20, recordStatus: 'READY', recordUrl: 'https://x/1',
    }), 1);
    facts = mergeCallEvent(facts, callEvent(), 2);
    facts = mergeCallEvent(facts, recordEvent(null), 3);
    expect(facts).toMatchObject({
      status: 'ACTIVE', direction: 'OUTCOMING', caller: '55', receiver: '66', deviceId: '9', duration: 20, recordUrl: 'https://x/1',
    });
  });

  it('takes the recording URL from READY events only', () => {
    let facts = mergeCallEvent(null, recordEvent('MIXING', { recordUrl: 'https://elsewhere.example/zzz' }), 1);
    expect(facts.recordUrl).toBeNull();
    facts = mergeCallEvent(facts, recordEvent('READY', { recordUrl: 'https://storage.wavoip.com/1' }), 2);
    facts = mergeCallEvent(facts, recordEvent('MIXING', { recordUrl: 'https://storage.wavoip.com/zzz' }), 3);
    expect(facts.recordUrl).toBe('https://storage.wavoip.com/1');
  });

  it('keeps the largest duration and remembers that the call was connected', () => {
    let facts = mergeCallEvent(null, callEvent({ status: 'ACTIVE', duration: 10 }), 1);
    facts = mergeCallEvent(facts, ended({ duration: 45 }), 2);
    facts = mergeCallEvent(facts, callEvent({ duration: 30 }), 3);
    expect(facts).toMatchObject({ duration: 45, wasConnected: true, status: 'ENDED' });
  });

  it('never modifies the facts it is given', () => {
    const before = deepFreeze(mergeCallEvent(null, callEvent({ status: 'ACTIVE', duration: 5 }), 1));
    const copy = structuredClone(before);
    mergeCallEvent(before, ended({ duration: 50, recordStatus: 'READY' }), 2);
    applyCallEvent({ ...before, attachment: deepFreeze({ state: 'pending', reason: null }) }, recordEvent('READY'), 3);
    expect(before).toEqual(copy);
  });
});

describe('a connected call keeps ENDED whatever final status comes late (issue 10 regression)', () => {
  // A 30-second answered call: NOT_ANSWERED sorted after ENDED alphabetically and used to win the tie.
  const answered: Step[] = [
    [callEvent({ status: 'ACTIVE', direction: 'INCOMING' }), 1_000],
    [ended({ duration: 30 }), 31_000],
    [callEvent({ status: 'NOT_ANSWERED', duration: 0 }), 32_000],
  ];

  it.each([
    ['in order', answered],
    ['NOT_ANSWERED first', [answered[2]!, answered[0]!, answered[1]!]],
    ['without ACTIVE, the duration alone', [answered[1]!, answered[2]!]],
    ['NOT_ANSWERED before ENDED, without ACTIVE', [answered[2]!, answered[1]!]],
  ])('%s', (_name, steps) => {
    expect(fold(steps).status).toBe('ENDED');
  });
});
