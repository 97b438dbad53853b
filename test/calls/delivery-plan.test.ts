import { describe, expect, it } from 'vitest';
import { applyCallEvent, type CallRecord } from '../../src/calls/call-state.ts';
import { planDeliveries } from '../../src/calls/delivery-plan.ts';
import { callEvent, fold, recordEvent, withAttachment } from './call-events.ts';

const kinds = (previous: CallRecord | null, next: CallRecord) => planDeliveries(previous, next).map((planned) => planned.kind);

const ringing = fold([[callEvent({ status: 'INCOMING_RING' }), 1_000]]);
const active = applyCallEvent(ringing, callEvent({ status: 'ACTIVE' }), 2_000);
const ended = applyCallEvent(active, callEvent({ status: 'ENDED', duration: 30 }), 3_000);

describe('planDeliveries', () => {
  it('tells nothing while the call goes on', () => {
    expect(kinds(null, ringing)).toEqual([]);
    expect(kinds(ringing, active)).toEqual([]);
  });

  it('tells the call once, when it ends', () => {
    expect(kinds(active, ended)).toEqual(['call']);
    expect(kinds(ended, applyCallEvent(ended, callEvent({ status: 'ENDED', duration: 30 }), 3_000))).toEqual([]);
    expect(kinds(ended, applyCallEvent(ended, recordEvent('MIXING'), 4_000))).toEqual([]);
  });

  it('tells the recording when it is attached, after the call', () => {
    expect(kinds(ended, withAttachment(ended, 'attached', null))).toEqual(['recording']);
  });

  it('a recording attached before the call ended tells the call first, in the same change, and the end later tells nothing', () => {
    const ready = fold([[recordEvent('READY'), 1_000]]);
    const attached = withAttachment(ready, 'attached', null);
    expect(kinds(ready, attached)).toEqual(['call', 'recording']);
    expect(kinds(attached, applyCallEvent(attached, callEvent({ status: 'ENDED', duration: 9 }), 5_000))).toEqual([]);
  });

  it.each([
    ['DISABLED', 'recording is off on the device (DISABLED)'],
    ['EMPTY_RECORDING', 'the call was too short to record (EMPTY_RECORDING)'],
  ])('tells %s as unavailable with its reason', (status, reason) => {
    const next = applyCallEvent(ended, recordEvent(status), 4_000);
    expect(planDeliveries(ended, next)).toEqual([{ kind: 'recording_unavailable', reason }]);
  });

  it('DISABLED then EMPTY_RECORDING is one fact: no recording', () => {
    const disabled = applyCallEvent(ended, recordEvent('DISABLED'), 4_000);
    const empty = applyCallEvent(disabled, recordEvent('EMPTY_RECORDING'), 5_000);
    expect(empty.attachment.state).toBe('empty');
    expect(kinds(disabled, empty)).toEqual([]);
  });

  it('a failure tells unavailable with its reason; a retry that attaches tells the recording', () => {
    const failed = withAttachment(ended, 'failed', 'recording not available in time');
    expect(planDeliveries(ended, failed)).toEqual([{ kind: 'recording_unavailable', reason: 'recording not available in time' }]);
    const retried = withAttachment(failed, 'pending', null);
    expect(kinds(failed, retried)).toEqual([]);
    expect(kinds(retried, withAttachment(retried, 'attached', null))).toEqual(['recording']);
  });

  it('a call that never connected tells the call, and no recording news', () => {
    const missed = fold([[callEvent({ status: 'NOT_ANSWERED' }), 1_000]]);
    expect(missed.attachment.state).toBe('none');
    expect(kinds(null, missed)).toEqual(['call']);
  });

  it('an expired recording tells nothing, and a redelivery of it tells only the call', () => {
    const attached = withAttachment(ended, 'attached', null);
    const expired = withAttachment(attached, 'expired', 'deleted by RECORDING_RETENTION');
    expect(kinds(attached, expired)).toEqual([]);
    expect(kinds(null, expired)).toEqual(['call']);
  });

  it('a redelivery (no previous) tells every fact the call holds', () => {
    expect(kinds(null, withAttachment(ended, 'attached', null))).toEqual(['call', 'recording']);
    expect(kinds(null, withAttachment(ended, 'failed', 'x'))).toEqual(['call', 'recording_unavailable']);
    expect(kinds(null, ended)).toEqual(['call']);
  });
});
