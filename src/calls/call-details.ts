import { hasConnected, type CallFacts } from './call-state.ts';
import { toE164 } from './phone-number.ts';

/**
 * What a person asks about a call, read from its merged facts: which way it went, who was on the
 * other end, and what happened. Pure functions of the facts, which are joins: any order and
 * repetition of the same events gives the same answers.
 */
export const CALL_DIRECTIONS = ['incoming', 'outgoing'] as const;
export type CallDirection = (typeof CALL_DIRECTIONS)[number];

export const CALL_OUTCOMES = ['in_progress', 'answered', 'missed', 'rejected', 'failed'] as const;
export type CallOutcome = (typeof CALL_OUTCOMES)[number];

interface CallDetails {
  direction: CallDirection | null;
  /** The other party: the caller of an incoming call, the receiver of an outgoing one. E.164. */
  peerPhone: string | null;
  /** The same number as it was sent. */
  peerPhoneRaw: string | null;
  /** Ours: the receiver of an incoming call, the caller of an outgoing one, else the device's phone. E.164. */
  devicePhone: string | null;
  devicePhoneRaw: string | null;
  outcome: CallOutcome;
  answeredAt: number | null;
}

/** WaVoIP writes `OUTCOMING` (sic); `OUTGOING` and any case are taken too. Anything else is unknown. */
export function normalizeDirection(raw: string | null): CallDirection | null {
  switch (raw?.trim().toUpperCase()) {
    case 'INCOMING':
      return 'incoming';
    case 'OUTCOMING':
    case 'OUTGOING':
      return 'outgoing';
    default:
      return null;
  }
}

export function describeCall(facts: CallFacts): CallDetails {
  const direction = normalizeDirection(facts.direction);
  const fromCall = { incoming: { peer: facts.caller, device: facts.receiver }, outgoing: { peer: facts.receiver, device: facts.caller } };
  const sides = direction === null ? { peer: null, device: null } : fromCall[direction];
  // A number the sender labelled as the peer's is taken over one read from the direction.
  const peerPhoneRaw = facts.statedPeerPhone ?? sides.peer;
  const devicePhoneRaw = sides.device ?? facts.deviceReportedPhone;
  return {
    direction,
    peerPhone: toE164(peerPhoneRaw),
    peerPhoneRaw,
    devicePhone: toE164(devicePhoneRaw),
    devicePhoneRaw,
    outcome: callOutcome(facts),
    answeredAt: answeredAt(facts),
  };
}

/**
 * - `in_progress`: no final status (nor a lost connection, nor a ready recording) yet;
 * - `answered`: the call connected (ACTIVE, a duration above 0, a ready recording), whatever
 *   final status came with or after it; also HANDLED_REMOTELY: answered on another device of
 *   the same WhatsApp account (no recording here, but nobody missed the call);
 * - otherwise, by the status that says why: REJECTED → `rejected`, NOT_ANSWERED → `missed`,
 *   FAILED or CONNECTION_LOST → `failed`, and a plain ENDED → `missed` (hung up before an answer).
 */
export function callOutcome(facts: CallFacts): CallOutcome {
  const seen = new Set(facts.statusesSeen);
  if (seen.size === 0 && facts.recordStatus !== 'READY') return 'in_progress';
  if (hasConnected(facts) || seen.has('HANDLED_REMOTELY')) return 'answered';
  if (seen.has('REJECTED')) return 'rejected';
  if (seen.has('NOT_ANSWERED')) return 'missed';
  if (seen.has('FAILED') || seen.has('CONNECTION_LOST')) return 'failed';
  return 'missed';
}

/**
 * When ACTIVE first arrived; without it, the end less the duration. That estimate can fall before
 * the call was first seen, when its first events never came: it is left so, being the better
 * answer to "when did they start talking". Null for a call that did not connect here.
 */
export function answeredAt(facts: CallFacts): number | null {
  if (!hasConnected(facts)) return null;
  if (facts.activeAt !== null) return facts.activeAt;
  if (facts.endedAt === null || facts.duration === null || facts.duration <= 0) return null;
  const estimate = facts.endedAt - Math.round(facts.duration * 1000);
  // A duration longer than all time since 1970 is a sender's nonsense, not a time to show.
  return estimate >= 0 ? estimate : null;
}
