import type { AttachmentState, CallRecord } from './call-state.ts';

/**
 * What a destination is told about a call: that it is over (`call`), that its recording is here
 * (`recording`), or that none will come (`recording_unavailable`, with the reason).
 */
export const DELIVERY_KINDS = ['call', 'recording', 'recording_unavailable'] as const;
export type DeliveryKind = (typeof DELIVERY_KINDS)[number];

export interface PlannedDelivery {
  kind: DeliveryKind;
  /** For `recording_unavailable`: why (the attachment's reason, or its state's meaning). */
  reason: string | null;
}

/** States that mean no recording will be attached (until an operator retries a failed one). */
const UNAVAILABLE_STATES: ReadonlySet<AttachmentState> = new Set(['failed', 'empty', 'disabled']);

const UNAVAILABLE_REASONS: Partial<Record<AttachmentState, string>> = {
  empty: 'the call was too short to record (EMPTY_RECORDING)',
  disabled: 'recording is off on the device (DISABLED)',
};

/**
 * A call is over once its end is known, or once its attachment reached a final state (a READY
 * and its download can come before the call's own end: the call is then told first).
 */
export function isCallOver(call: CallRecord): boolean {
  return call.endedAt !== null || call.attachment.state !== 'pending';
}

/**
 * The deliveries one change of a call causes, for every destination alike, in the order they
 * must arrive. Each fact is told once: the change that first makes it true creates it, and a
 * change that repeats what was known (a duplicated event, a later event of the same call)
 * creates nothing. A recording attached by a retry after a failure is a new fact.
 * `previous` null: a call seen for the first time, or a redelivery of everything it holds.
 */
export function planDeliveries(previous: CallRecord | null, next: CallRecord): PlannedDelivery[] {
  const planned: PlannedDelivery[] = [];
  if (isCallOver(next) && (previous === null || !isCallOver(previous))) planned.push({ kind: 'call', reason: null });
  const was = previous?.attachment.state ?? null;
  const now = next.attachment.state;
  if (now === 'attached' && was !== 'attached') planned.push({ kind: 'recording', reason: null });
  // Disabled then empty (a later, more final status) is the same fact: no recording.
  if (UNAVAILABLE_STATES.has(now) && (was === null || !UNAVAILABLE_STATES.has(was))) {
    planned.push({ kind: 'recording_unavailable', reason: next.attachment.reason ?? UNAVAILABLE_REASONS[now] ?? now });
  }
  return planned;
}
