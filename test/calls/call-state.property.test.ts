import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  applyCallEvent,
  becameReady,
  expectedAttachmentState,
  FINAL_CALL_STATUSES,
  mergeCallEvent,
  type CallRecord,
} from '../../src/calls/call-state.ts';
import { normalizeWebhookPayload, type CallEvent, type RecordEvent } from '../../src/calls/webhook-event.ts';
import { callOutcome, describeCall } from '../../src/calls/call-details.ts';
import { fold, trail, withAttachment, type Step } from './call-events.ts';

const CALL_STATUSES = [
  'NONE', 'INCOMING_RING', 'OUTGOING_RING', 'OUTGOING_CALLING', 'CONNECTING', 'CONNECTION_LOST', 'ACTIVE',
  'HANDLED_REMOTELY', 'ENDED', 'REJECTED', 'REMOTE_CALL_IN_PROGRESS', 'FAILED', 'NOT_ANSWERED', 'CALLING',
];
const RECORD_STATUSES = ['READY', 'RECORDING', 'MIXING', 'DISABLED', 'EMPTY_RECORDING'];
const UNKNOWN_STATUSES = ['ON_HOLD', 'TRANSCODING', 'X', 'ZZZ_NEW', 'AAA'];

/** A status as a sender might write it: documented or not, any case, padded. */
const statusText = (known: string[]) =>
  fc.tuple(fc.constantFrom(...known, ...UNKNOWN_STATUSES), fc.constantFrom('upper', 'lower', 'padded')).map(([status, style]) =>
    style === 'lower' ? status.toLowerCase() : style === 'padded' ? ` ${status} ` : status,
  );

const optional = <T>(arbitrary: fc.Arbitrary<T>) => fc.option(arbitrary, { nil: undefined });

/** A raw CALL or RECORD body of call 123456, in the shapes WaVoIP sends. */
const rawBody = fc
  .record({
    type: fc.constantFrom('CALL', 'RECORD', 'HUMANIZED', 'ROBOTIC', 'record', undefined),
    whatsapp_call_id: fc.constantFrom(123456, '123456', ' 123456 '),
    id_session: optional(fc.constantFrom(789, '789', 8758847)),
    status: optional(fc.oneof(statusText(CALL_STATUSES), statusText(RECORD_STATUSES))),
    record_status: optional(statusText(RECORD_STATUSES)),
    record_url: optional(fc.constantFrom('https://storage.wavoip.com/123456', 'https://storage.wavoip.com/other', '')),
    direction: optional(fc.constantFrom('INCOMING', 'OUTCOMING', 'incoming', 'OUTGOING', 'outgoing')),
    peer: optional(fc.record({ phone: fc.constantFrom('5521987654321', '+55 21 98765-4321'), display_name: fc.constantFrom('Maria', 'João') })),
    caller: optional(fc.constantFrom('5511911112222', 5511911112222, '5566999050312')),
    receiver: optional(fc.constantFrom('5511933334444', '556692341814')),
    duration: optional(fc.constantFrom(0, 45, '45', 12.5, '0', 3600)),
  })
  .map((fields) => Object.fromEntries(Object.entries(fields).filter(([, value]) => value !== undefined)));

function toEvent(body: Record<string, unknown>): CallEvent | RecordEvent {
  const result = normalizeWebhookPayload(body);
  if (!result.ok || (result.event.type !== 'CALL' && result.event.type !== 'RECORD')) {
    throw new Error(`generator produced a body that is not a CALL or RECORD: ${JSON.stringify(body)}`);
  }
  return result.event;
}

const step: fc.Arbitrary<Step> = fc.tuple(rawBody.map(toEvent), fc.integer({ min: 0, max: 10_000_000 }));
const steps = fc.array(step, { minLength: 1, maxLength: 10 });

/** The same steps, shuffled, with some of them delivered again. */
const reorderedWithDuplicates = steps.chain((original) =>
  fc
    .array(fc.constantFrom(...original), { maxLength: 6 })
    .chain((duplicates) => {
      const all = [...original, ...duplicates];
      return fc.shuffledSubarray(all, { minLength: all.length, maxLength: all.length });
    })
    .map((reordered) => [original, reordered] as const),
);

/** Record statuses by how final they are; the spec does not order DISABLED against EMPTY_RECORDING. */
function recordRank(status: string | null): number {
  if (status === null) return -1;
  return { RECORDING: 1, MIXING: 2, DISABLED: 3, EMPTY_RECORDING: 3, READY: 4 }[status] ?? 0;
}

function callRank(status: string | null): number {
  if (status === null) return -1;
  if (FINAL_CALL_STATUSES.has(status)) return 3;
  if (status === 'ACTIVE' || status === 'CONNECTION_LOST') return 2;
  return CALL_STATUSES.includes(status) ? 1 : 0;
}

describe('call state properties', () => {
  it('any order and any duplication of the same events gives the same call record', () => {
    fc.assert(
      fc.property(reorderedWithDuplicates, ([original, reordered]) => {
        expect(fold(reordered)).toEqual(fold(original));
      }),
      { numRuns: 1000 },
    );
  });

  it('a record folded from events always has the attachment its facts imply', () => {
    fc.assert(
      fc.property(steps, (sequence) => {
        for (const record of trail(sequence)) {
          expect(record.attachment).toEqual({ state: expectedAttachmentState(record), reason: null });
        }
      }),
      { numRuns: 500 },
    );
  });

  it('the record status never moves backwards, and the call status never leaves a final status', () => {
    fc.assert(
      fc.property(steps, (sequence) => {
        const records = trail(sequence);
        for (let index = 1; index < records.length; index += 1) {
          const before = records[index - 1]!;
          const after = records[index]!;
          expect(recordRank(after.recordStatus)).toBeGreaterThanOrEqual(recordRank(before.recordStatus));
          if (before.recordStatus === 'READY') expect(after.recordStatus).toBe('READY');
          expect(callRank(after.status)).toBeGreaterThanOrEqual(callRank(before.status));
          if (before.wasConnected) expect(after.wasConnected).toBe(true);
          if (before.endedAt !== null) expect(after.endedAt).not.toBeNull();
          expect(after.firstSeenAt).toBeLessThanOrEqual(before.firstSeenAt);
          expect(after.lastSeenAt).toBeGreaterThanOrEqual(before.lastSeenAt);
          for (const key of ['caller', 'receiver', 'direction', 'deviceId', 'recordUrl', 'duration'] as const) {
            if (before[key] !== null) expect(after[key]).not.toBeNull();
          }
        }
      }),
      { numRuns: 500 },
    );
  });

  it('applying the same event twice at the same time is the same as once', () => {
    fc.assert(
      fc.property(steps, step, (history, [event, at]) => {
        const facts = mergeCallEvent(fold(history), event, at);
        expect(mergeCallEvent(facts, event, at)).toEqual(facts);
      }),
      { numRuns: 500 },
    );
  });

  it.each(['attached', 'expired'] as const)('an %s recording stays so whatever comes next', (state) => {
    fc.assert(
      fc.property(steps, steps, (before, after) => {
        const settled = withAttachment(fold(before), state, 'kept');
        expect(fold(after, settled).attachment).toEqual({ state, reason: 'kept' });
      }),
      { numRuns: 300 },
    );
  });

  it('a failed recording only leaves failed for a first READY or a status saying no file will come', () => {
    fc.assert(
      fc.property(steps, step, (history, [event, at]) => {
        const failed: CallRecord = withAttachment(fold(history), 'failed', 'gave up');
        const next = applyCallEvent(failed, event, at);
        switch (next.attachment.state) {
          case 'failed':
            expect(next.attachment.reason).toBe('gave up');
            expect(expectedAttachmentState(next)).toBe('pending');
            break;
          case 'pending':
            expect(becameReady(failed, next)).toBe(true);
            expect(next.attachment.reason).toBeNull();
            break;
          default:
            expect(next.attachment).toEqual({ state: expectedAttachmentState(next), reason: null });
            expect(['empty', 'disabled', 'none']).toContain(next.attachment.state);
        }
      }),
      { numRuns: 500 },
    );
  });
});

describe('call outcome properties', () => {
  it('any order and any duplication of the same events gives the same direction, parties and outcome', () => {
    fc.assert(
      fc.property(reorderedWithDuplicates, ([original, reordered]) => {
        expect(describeCall(fold(reordered))).toEqual(describeCall(fold(original)));
      }),
      { numRuns: 1000 },
    );
  });

  it('a call that connected and ended is answered, and shows ENDED once ENDED came, whatever comes after', () => {
    fc.assert(
      fc.property(steps, steps, (before, after) => {
        const settled = fold(before);
        const next = fold(after, settled);
        if (callOutcome(settled) === 'answered') expect(callOutcome(next)).toBe('answered');
        const connected = settled.wasConnected || (settled.duration ?? 0) > 0 || settled.recordStatus === 'READY';
        if (connected && settled.statusesSeen.includes('ENDED')) expect(next.status).toBe('ENDED');
      }),
      { numRuns: 1000 },
    );
  });

  it('a call never goes back to in_progress once its end is known', () => {
    fc.assert(
      fc.property(steps, (sequence) => {
        const outcomes = trail(sequence).map(callOutcome);
        const firstEnd = outcomes.findIndex((outcome) => outcome !== 'in_progress');
        if (firstEnd >= 0) expect(outcomes.slice(firstEnd)).not.toContain('in_progress');
      }),
      { numRuns: 500 },
    );
  });
});
