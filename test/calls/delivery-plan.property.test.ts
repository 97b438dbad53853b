import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { applyCallEvent, type CallRecord } from '../../src/calls/call-state.ts';
import { isCallOver, planDeliveries, type DeliveryKind } from '../../src/calls/delivery-plan.ts';
import type { CallEvent, RecordEvent } from '../../src/calls/webhook-event.ts';
import { callEvent, recordEvent, withAttachment } from './call-events.ts';

/**
 * What happens to a call: its events (any order, repeated), and what the fetch job and an
 * operator do to its attachment (attach or fail a pending one, retry a failed one).
 */
type Change = { event: CallEvent | RecordEvent; at: number } | { job: 'attach' | 'fail' | 'retry' };

const event: fc.Arbitrary<Change> = fc.record({
  event: fc.oneof(
    fc.constantFrom('INCOMING_RING', 'ACTIVE', 'ENDED', 'NOT_ANSWERED', 'REJECTED', 'CONNECTION_LOST').map((status) =>
      callEvent({ status, duration: status === 'ENDED' ? 30 : null }),
    ),
    fc.constantFrom('RECORDING', 'MIXING', 'READY', 'DISABLED', 'EMPTY_RECORDING').map((status) => recordEvent(status)),
  ),
  at: fc.integer({ min: 0, max: 1_000_000 }),
});
const job: fc.Arbitrary<Change> = fc.constantFrom('attach', 'fail', 'retry').map((name) => ({ job: name as 'attach' | 'fail' | 'retry' }));
const history = fc.array(fc.oneof({ arbitrary: event, weight: 3 }, { arbitrary: job, weight: 1 }), { minLength: 1, maxLength: 14 });

function apply(call: CallRecord | null, change: Change): CallRecord | null {
  if ('event' in change) return applyCallEvent(call, change.event, change.at);
  if (call === null) return null;
  const state = call.attachment.state;
  if (change.job === 'attach' && state === 'pending') return withAttachment(call, 'attached', null);
  if (change.job === 'fail' && state === 'pending') return withAttachment(call, 'failed', 'gave up');
  if (change.job === 'retry' && state === 'failed') return withAttachment(call, 'pending', null);
  return call;
}

/**
 * Folds the changes as the service does, keeping what the outbox keeps: each kind once per call
 * (its unique key), in the order first planned.
 */
function run(changes: readonly Change[]): { call: CallRecord | null; planned: DeliveryKind[]; outbox: DeliveryKind[] } {
  let call: CallRecord | null = null;
  const planned: DeliveryKind[] = [];
  for (const change of changes) {
    const next = apply(call, change);
    if (next === null) continue;
    planned.push(...planDeliveries(call, next).map((delivery) => delivery.kind));
    call = next;
  }
  return { call, planned, outbox: [...new Set(planned)] };
}

describe('delivery plan properties', () => {
  it('the call is told once it is over, before anything else', () => {
    fc.assert(
      fc.property(history, (changes) => {
        const { call, outbox } = run(changes);
        if (call !== null && isCallOver(call)) expect(outbox).toContain('call');
        if (outbox.length > 0) expect(outbox[0]).toBe('call');
      }),
      { numRuns: 2000 },
    );
  });

  it('whatever the order and repetition of events and job outcomes, the final state is told', () => {
    fc.assert(
      fc.property(history, (changes) => {
        const { call, outbox } = run(changes);
        const state = call?.attachment.state;
        if (state === 'attached') expect(outbox).toContain('recording');
        if (state === 'failed' || state === 'empty' || state === 'disabled') expect(outbox).toContain('recording_unavailable');
        if (!outbox.includes('recording')) expect(['attached', 'expired']).not.toContain(state);
      }),
      { numRuns: 2000 },
    );
  });

  it('an event repeated at once plans nothing more', () => {
    fc.assert(
      fc.property(history, event, (changes, repeated) => {
        const once = apply(run(changes).call, repeated) as CallRecord;
        expect(planDeliveries(once, apply(once, repeated) as CallRecord)).toEqual([]);
      }),
      { numRuns: 1000 },
    );
  });

  it('a kind is planned again only after the attachment left what it told (a READY or a retry after a failure)', () => {
    const unavailable = new Set(['failed', 'empty', 'disabled']);
    fc.assert(
      fc.property(history, (changes) => {
        let call: CallRecord | null = null;
        const told = new Set<DeliveryKind>();
        let wentBack = false;
        for (const change of changes) {
          const next = apply(call, change);
          if (next === null) continue;
          const [was, now] = [call?.attachment.state, next.attachment.state];
          if (was !== undefined && was !== now && !(unavailable.has(was) && unavailable.has(now))) wentBack = true;
          for (const { kind } of planDeliveries(call, next)) {
            if (told.has(kind)) expect(wentBack).toBe(true);
            told.add(kind);
          }
          call = next;
        }
      }),
      { numRuns: 2000 },
    );
  });
});
