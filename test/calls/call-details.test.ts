import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { answeredAt, callOutcome, describeCall, normalizeDirection, type CallOutcome } from '../../src/calls/call-details.ts';
import { applyCallEvent } from '../../src/calls/call-state.ts';
import { normalizeWebhookPayload, type CallEvent, type RecordEvent } from '../../src/calls/webhook-event.ts';
import { callEvent, facts, fold, recordEvent, type Step } from './call-events.ts';

const fixtures = JSON.parse(readFileSync(new URL('../fixtures/wavoip-payloads.json', import.meta.url), 'utf8')) as Record<string, unknown>;

function fixtureEvent(name: string): CallEvent | RecordEvent {
  const result = normalizeWebhookPayload(fixtures[name]);
  if (!result.ok || (result.event.type !== 'CALL' && result.event.type !== 'RECORD')) throw new Error(`${name} is not a CALL or RECORD`);
  return result.event;
}

describe('normalizeDirection', () => {
  it.each<[string | null, string | null]>([
    ['INCOMING', 'incoming'],
    ['incoming', 'incoming'],
    [' Incoming ', 'incoming'],
    ['OUTCOMING', 'outgoing'],
    ['outcoming', 'outgoing'],
    ['OUTGOING', 'outgoing'],
    ['Outgoing', 'outgoing'],
    ['INBOUND', null],
    ['', null],
    [null, null],
  ])('%s → %s', (raw, expected) => {
    expect(normalizeDirection(raw)).toBe(expected);
  });
});

describe('describeCall with the fixture payloads', () => {
  it('an outgoing call as WaVoIP sends it live: OUTCOMING, we are the caller', () => {
    const details = describeCall(fold([[fixtureEvent('call_create_live'), 1_000]]));
    expect(details).toEqual({
      direction: 'outgoing',
      peerPhone: '+556692341814',
      peerPhoneRaw: '556692341814',
      devicePhone: '+5566999050312',
      devicePhoneRaw: '5566999050312',
      outcome: 'in_progress',
      answeredAt: null,
    });
  });

  it('an incoming call whose type was overwritten by HUMANIZED: the caller is the peer', () => {
    const call = fold([[fixtureEvent('call_type_overwritten'), 100_000]]);
    expect(call.callType).toBe('HUMANIZED');
    expect(describeCall(call)).toMatchObject({
      direction: 'incoming', peerPhone: '+5511911112222', devicePhone: '+5511933334444', outcome: 'answered', answeredAt: 100_000 - 45_000,
    });
  });

  it('a peer object names the other party, with its name', () => {
    const call = fold([[fixtureEvent('call_outgoing_with_peer'), 1_000]]);
    expect(call.peerName).toBe('Maria Souza');
    expect(describeCall(call)).toMatchObject({ direction: 'outgoing', peerPhone: '+5521987654321', peerPhoneRaw: '5521987654321', devicePhone: null });
  });

  it('the device phone comes from the device when the payloads leave our side out, never over them', () => {
    expect(describeCall(fold([[fixtureEvent('call_outgoing_with_peer'), 1_000]])).devicePhone).toBeNull();
    expect(describeCall(applyCallEvent(null, fixtureEvent('call_outgoing_with_peer'), 1_000, '5566999050312'))).toMatchObject({
      devicePhone: '+5566999050312', devicePhoneRaw: '5566999050312',
    });
    expect(describeCall(applyCallEvent(null, fixtureEvent('call_create_live'), 1_000, '5500000000000')).devicePhone).toBe('+5566999050312');
  });

  it('a ROBOTIC call with a lowercase direction and a formatted caller, not answered', () => {
    const call = fold([[fixtureEvent('call_robotic_lowercase_direction'), 1_000]]);
    expect(call.callType).toBe('ROBOTIC');
    expect(describeCall(call)).toMatchObject({
      direction: 'incoming', peerPhone: '+5521987654321', peerPhoneRaw: '+55 (21) 98765-4321', devicePhone: '+5566999050312', outcome: 'missed',
    });
  });

  it('a call with no direction names no sides from caller and receiver', () => {
    expect(describeCall(fold([[callEvent({ caller: '5511911112222', receiver: '5511933334444' }), 1]]))).toMatchObject({
      direction: null, peerPhone: null, devicePhone: null,
    });
  });

  it('a number that is not E.164 keeps its raw form only', () => {
    expect(describeCall(fold([[callEvent({ direction: 'INCOMING', caller: '011911112222' }), 1]]))).toMatchObject({
      peerPhone: null, peerPhoneRaw: '011911112222',
    });
  });
});

describe('callOutcome', () => {
  const ended = (over: Parameters<typeof callEvent>[0] = {}) => callEvent({ status: 'ENDED', ...over });
  const cases: Array<[string, Step[], CallOutcome]> = [
    ['ringing', [[callEvent({ status: 'INCOMING_RING' }), 1]], 'in_progress'],
    ['ACTIVE, no end yet', [[callEvent({ status: 'ACTIVE' }), 1]], 'in_progress'],
    ['a duration, no end yet', [[callEvent({ duration: 30 }), 1]], 'in_progress'],
    ['only a recording still mixing', [[recordEvent('MIXING'), 1]], 'in_progress'],
    ['ACTIVE then ENDED', [[callEvent({ status: 'ACTIVE' }), 1], [ended({ duration: 30 }), 2]], 'answered'],
    ['ENDED with a duration', [[ended({ duration: 30 }), 1]], 'answered'],
    ['ACTIVE, ENDED, then a late NOT_ANSWERED', [[callEvent({ status: 'ACTIVE' }), 1], [ended({ duration: 30 }), 2], [callEvent({ status: 'NOT_ANSWERED' }), 3]], 'answered'],
    ['ACTIVE then REJECTED', [[callEvent({ status: 'ACTIVE' }), 1], [callEvent({ status: 'REJECTED' }), 2]], 'answered'],
    ['only a READY recording', [[recordEvent('READY'), 1]], 'answered'],
    ['ACTIVE then CONNECTION_LOST', [[callEvent({ status: 'ACTIVE' }), 1], [callEvent({ status: 'CONNECTION_LOST' }), 2]], 'answered'],
    ['HANDLED_REMOTELY: answered on another device', [[callEvent({ status: 'HANDLED_REMOTELY', duration: 0 }), 1]], 'answered'],
    ['REJECTED', [[callEvent({ status: 'REJECTED', duration: 0 }), 1]], 'rejected'],
    ['REJECTED then ENDED', [[callEvent({ status: 'REJECTED' }), 1], [ended({ duration: 0 }), 2]], 'rejected'],
    ['NOT_ANSWERED', [[callEvent({ status: 'NOT_ANSWERED', duration: 0 }), 1]], 'missed'],
    ['ENDED without connecting', [[callEvent({ status: 'CALLING' }), 1], [ended({ duration: 0 }), 2]], 'missed'],
    ['FAILED', [[callEvent({ status: 'FAILED' }), 1]], 'failed'],
    ['CONNECTION_LOST without connecting', [[callEvent({ status: 'CONNECTION_LOST', duration: 0 }), 1]], 'failed'],
    ['CONNECTION_LOST then ENDED, never connected', [[callEvent({ status: 'CONNECTION_LOST' }), 1], [ended({ duration: 0 }), 2]], 'failed'],
    ['EMPTY_RECORDING alone says nothing of the call', [[recordEvent('EMPTY_RECORDING'), 1]], 'in_progress'],
  ];

  it.each(cases)('%s → %s', (_name, steps, expected) => {
    expect(callOutcome(fold(steps))).toBe(expected);
    expect(callOutcome(fold([...steps].reverse()))).toBe(expected);
  });
});

describe('answeredAt', () => {
  it('is when ACTIVE first arrived', () => {
    expect(answeredAt(fold([[callEvent({ status: 'ACTIVE' }), 5_000], [callEvent({ status: 'ACTIVE' }), 3_000], [callEvent({ status: 'ENDED', duration: 30 }), 40_000]]))).toBe(3_000);
  });

  it('without ACTIVE, is the end less the duration', () => {
    expect(answeredAt(facts({ endedAt: 60_000, duration: 30.5, firstSeenAt: 1_000, statusesSeen: ['ENDED'] }))).toBe(29_500);
  });

  it('is null for a call that did not connect, or whose start cannot be told', () => {
    expect(answeredAt(facts({ endedAt: 60_000, duration: 0, statusesSeen: ['NOT_ANSWERED'] }))).toBeNull();
    expect(answeredAt(facts({ recordStatus: 'READY' }))).toBeNull();
    // Found by the hostile-input fuzzing: ended_at − duration was an invalid date, and the API answered 500.
    expect(answeredAt(facts({ endedAt: 60_000, duration: 1e300, statusesSeen: ['ENDED'] }))).toBeNull();
    expect(answeredAt(facts({ endedAt: 60_000, duration: 61, statusesSeen: ['ENDED'] }))).toBeNull();
  });
});
