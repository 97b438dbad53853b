/** Builders shared by the call-state and fetch-plan unit tests (not a test file itself). */
import { applyCallEvent, type CallFacts, type CallRecord } from '../../src/calls/call-state.ts';
import type { CallEvent, RecordEvent } from '../../src/calls/webhook-event.ts';

export const CALL_ID = '123456';

export function callEvent(over: Partial<Omit<CallEvent, 'type'>> = {}): CallEvent {
  return {
    type: 'CALL',
    callId: CALL_ID,
    status: null,
    recordStatus: null,
    recordUrl: null,
    direction: null,
    caller: null,
    receiver: null,
    deviceId: null,
    duration: null,
    callType: null,
    peerPhone: null,
    peerName: null,
    ...over,
  };
}

export function recordEvent(recordStatus: string | null, over: Partial<Omit<RecordEvent, 'type'>> = {}): RecordEvent {
  return { type: 'RECORD', callId: CALL_ID, recordStatus, recordUrl: null, deviceId: null, ...over };
}

export type Step = readonly [CallEvent | RecordEvent, number];

/** Folds `applyCallEvent` from no call, the way event processing does. */
export function fold(steps: readonly Step[], start: CallRecord | null = null): CallRecord {
  let record = start;
  for (const [event, receivedAt] of steps) record = applyCallEvent(record, event, receivedAt);
  if (record === null) throw new Error('fold needs at least one step or a start record');
  return record;
}

/** Every record along the way, the first one being the record after the first step. */
export function trail(steps: readonly Step[], start: CallRecord | null = null): CallRecord[] {
  const records: CallRecord[] = [];
  let record = start;
  for (const [event, receivedAt] of steps) {
    record = applyCallEvent(record, event, receivedAt);
    records.push(record);
  }
  return records;
}

export function facts(over: Partial<CallFacts> = {}): CallFacts {
  return {
    callId: CALL_ID,
    direction: null,
    caller: null,
    receiver: null,
    deviceId: null,
    status: null,
    wasConnected: false,
    duration: null,
    recordStatus: null,
    recordUrl: null,
    hintedUrl: null,
    statusesSeen: [],
    activeAt: null,
    callType: null,
    peerName: null,
    statedPeerPhone: null,
    deviceReportedPhone: null,
    firstSeenAt: 1_000,
    lastSeenAt: 1_000,
    endedAt: null,
    ...over,
  };
}

export function withAttachment(record: CallRecord, state: CallRecord['attachment']['state'], reason: string | null): CallRecord {
  return { ...record, attachment: { state, reason } };
}

export function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null) {
    for (const inner of Object.values(value)) deepFreeze(inner);
    Object.freeze(value);
  }
  return value;
}
