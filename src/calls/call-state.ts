import type { CallEvent, RecordEvent } from './webhook-event.ts';

/**
 * What is known about a call, merged from its events. Every field merges as a join
 * (max by rank, min/max of times, OR of flags), so the same set of events gives the same
 * call whatever their order and however often each arrives: state never moves backwards.
 */
export interface CallFacts {
  callId: string;
  direction: string | null;
  caller: string | null;
  receiver: string | null;
  deviceId: string | null;
  status: string | null;
  wasConnected: boolean;
  duration: number | null;
  recordStatus: string | null;
  recordUrl: string | null;
  /**
   * A `record_url` sent without READY (or with another status): where the recording may appear.
   * Polled besides the template URL, never trusted as the recording's own URL.
   */
  hintedUrl: string | null;
  /**
   * The final statuses (and CONNECTION_LOST) received, sorted and each once: a union, so the
   * status shown and the call's outcome never depend on which of them came last.
   */
  statusesSeen: string[];
  /** When ACTIVE first arrived: the call was answered then. */
  activeAt: number | null;
  /** `HUMANIZED` or `ROBOTIC`, when the sender said (in the CALL schema's second `type` key). */
  callType: string | null;
  /** The other party's name and number, when a payload names them (`peer.display_name`, `peer.phone`). */
  peerName: string | null;
  statedPeerPhone: string | null;
  /** The phone the call's device announced in its DEVICE events, when known as the call was updated. */
  deviceReportedPhone: string | null;
  firstSeenAt: number;
  lastSeenAt: number;
  /** When the first event with a final call status arrived. */
  endedAt: number | null;
}

/** `expired`: the recording was attached, then deleted by RECORDING_RETENTION. */
export const ATTACHMENT_STATES = ['pending', 'attached', 'failed', 'empty', 'disabled', 'none', 'expired'] as const;
export type AttachmentState = (typeof ATTACHMENT_STATES)[number];

interface Attachment {
  state: AttachmentState;
  reason: string | null;
}

export interface CallRecord extends CallFacts {
  attachment: Attachment;
}

/** Record statuses from least to most final; a status not listed ranks lowest. */
const RECORD_STATUS_RANK: Record<string, number> = {
  RECORDING: 1,
  MIXING: 2,
  DISABLED: 3,
  EMPTY_RECORDING: 4,
  // A file exists: wins over a conflicting "no file will come".
  READY: 5,
};

export const FINAL_CALL_STATUSES = new Set(['ENDED', 'REJECTED', 'NOT_ANSWERED', 'FAILED', 'HANDLED_REMOTELY']);

const CALL_STATUS_RANK: Record<string, number> = {
  NONE: 1,
  INCOMING_RING: 1,
  OUTGOING_RING: 1,
  OUTGOING_CALLING: 1,
  CALLING: 1,
  CONNECTING: 1,
  REMOTE_CALL_IN_PROGRESS: 1,
  ACTIVE: 2,
  CONNECTION_LOST: 3,
  ...Object.fromEntries([...FINAL_CALL_STATUSES].map((status) => [status, 4])),
};

/** Statuses that end a call as far as its outcome goes: the final ones, and a lost connection. */
const DECISIVE_STATUSES = new Set([...FINAL_CALL_STATUSES, 'CONNECTION_LOST']);

/**
 * Which final status a call shows when several arrived. A call that connected ended: ENDED wins
 * over a late NOT_ANSWERED or REJECTED. One that did not connect shows the status that says
 * why, rather than a plain ENDED.
 */
const FINAL_STATUS_PREFERENCE = ['HANDLED_REMOTELY', 'REJECTED', 'NOT_ANSWERED', 'FAILED', 'ENDED'];

/**
 * The call connected: ACTIVE was seen, a duration above 0 was sent, or a recording is ready
 * (there is audio of a conversation).
 */
export function hasConnected(facts: Pick<CallFacts, 'wasConnected' | 'duration' | 'recordStatus'>): boolean {
  return facts.wasConnected || (facts.duration ?? 0) > 0 || facts.recordStatus === 'READY';
}

/**
 * Merges one CALL or RECORD event, received at `receivedAt`, into what is known of its call.
 * `deviceReportedPhone`: the phone the call's device announced, looked up as the event is applied.
 */
export function mergeCallEvent(
  facts: CallFacts | null,
  event: CallEvent | RecordEvent,
  receivedAt: number,
  deviceReportedPhone: string | null = null,
): CallFacts {
  const status = event.type === 'CALL' ? event.status : null;
  const call = event.type === 'CALL' ? event : null;
  const incoming: CallFacts = {
    callId: event.callId,
    direction: event.type === 'CALL' ? event.direction : null,
    caller: event.type === 'CALL' ? event.caller : null,
    receiver: event.type === 'CALL' ? event.receiver : null,
    deviceId: event.deviceId,
    status,
    wasConnected: status === 'ACTIVE',
    duration: event.type === 'CALL' ? event.duration : null,
    recordStatus: event.recordStatus,
    // Only READY's URL is the recording's; a URL on another status could be stale or made up.
    recordUrl: event.recordStatus === 'READY' ? event.recordUrl : null,
    hintedUrl: event.recordStatus === 'READY' ? null : event.recordUrl,
    statusesSeen: status !== null && DECISIVE_STATUSES.has(status) ? [status] : [],
    activeAt: status === 'ACTIVE' ? receivedAt : null,
    callType: call?.callType ?? null,
    peerName: call?.peerName ?? null,
    statedPeerPhone: call?.peerPhone ?? null,
    deviceReportedPhone,
    firstSeenAt: receivedAt,
    lastSeenAt: receivedAt,
    endedAt: status !== null && FINAL_CALL_STATUSES.has(status) ? receivedAt : null,
  };
  return withShownStatus(facts === null ? incoming : joinFacts(facts, incoming));
}

function joinFacts(a: CallFacts, b: CallFacts): CallFacts {
  return {
    callId: a.callId,
    direction: joinText(a.direction, b.direction),
    caller: joinText(a.caller, b.caller),
    receiver: joinText(a.receiver, b.receiver),
    deviceId: joinText(a.deviceId, b.deviceId),
    status: joinRanked(a.status, b.status, CALL_STATUS_RANK),
    wasConnected: a.wasConnected || b.wasConnected,
    duration: joinMax(a.duration, b.duration),
    recordStatus: joinRanked(a.recordStatus, b.recordStatus, RECORD_STATUS_RANK),
    recordUrl: joinText(a.recordUrl, b.recordUrl),
    hintedUrl: joinText(a.hintedUrl, b.hintedUrl),
    statusesSeen: [...new Set([...a.statusesSeen, ...b.statusesSeen])].sort(),
    activeAt: joinMin(a.activeAt, b.activeAt),
    callType: joinText(a.callType, b.callType),
    peerName: joinText(a.peerName, b.peerName),
    statedPeerPhone: joinText(a.statedPeerPhone, b.statedPeerPhone),
    deviceReportedPhone: joinText(a.deviceReportedPhone, b.deviceReportedPhone),
    firstSeenAt: Math.min(a.firstSeenAt, b.firstSeenAt),
    lastSeenAt: Math.max(a.lastSeenAt, b.lastSeenAt),
    endedAt: joinMin(a.endedAt, b.endedAt),
  };
}

/**
 * Once a final status is known, the status shown is decided from the union of final statuses and
 * whether the call connected (both joins), never from which came last: equal-ranked statuses
 * used to tie-break alphabetically, and a late NOT_ANSWERED replaced ENDED on an answered call.
 */
function withShownStatus(facts: CallFacts): CallFacts {
  const finals = facts.statusesSeen.filter((status) => FINAL_CALL_STATUSES.has(status));
  if (finals.length === 0) return facts;
  const shown = hasConnected(facts) && finals.includes('ENDED') ? 'ENDED' : FINAL_STATUS_PREFERENCE.find((status) => finals.includes(status));
  return shown === undefined || shown === facts.status ? facts : { ...facts, status: shown };
}

/** Values that should never differ between events of one call; a deterministic pick if they do. */
function joinText(a: string | null, b: string | null): string | null {
  if (a === null) return b;
  if (b === null) return a;
  return a >= b ? a : b;
}

function joinMin(a: number | null, b: number | null): number | null {
  if (a === null) return b;
  if (b === null) return a;
  return Math.min(a, b);
}

function joinMax(a: number | null, b: number | null): number | null {
  if (a === null) return b;
  if (b === null) return a;
  return Math.max(a, b);
}

function joinRanked(a: string | null, b: string | null, ranks: Record<string, number>): string | null {
  if (a === null) return b;
  if (b === null) return a;
  const rankA = ranks[a] ?? 0;
  const rankB = ranks[b] ?? 0;
  if (rankA !== rankB) return rankA > rankB ? a : b;
  return a >= b ? a : b;
}

export function isCallEnded(facts: CallFacts): boolean {
  return facts.endedAt !== null;
}

/** The attachment state the call's events alone imply, before any download outcome. */
export function expectedAttachmentState(facts: CallFacts): 'pending' | 'empty' | 'disabled' | 'none' {
  if (facts.recordStatus === 'EMPTY_RECORDING') return 'empty';
  if (facts.recordStatus === 'DISABLED') return 'disabled';
  if (facts.recordStatus !== null) return 'pending';
  const neverConnected = !facts.wasConnected && (facts.duration ?? 0) === 0;
  return isCallEnded(facts) && neverConnected ? 'none' : 'pending';
}

/**
 * The attachment after an event. An attached recording is final, and so is its expiry. A failed one stays failed
 * until something new can change the outcome: a first READY (download again) or a status
 * saying no file will come.
 */
export function nextAttachment(previous: CallRecord | null, facts: CallFacts): Attachment {
  if (previous?.attachment.state === 'attached' || previous?.attachment.state === 'expired') return previous.attachment;
  const expected = expectedAttachmentState(facts);
  if (previous?.attachment.state === 'failed' && expected === 'pending' && !becameReady(previous, facts)) {
    return previous.attachment;
  }
  return { state: expected, reason: null };
}

export function becameReady(previous: CallFacts | null, facts: CallFacts): boolean {
  return facts.recordStatus === 'READY' && previous?.recordStatus !== 'READY';
}

/** Applies a CALL or RECORD event to a call (or creates it). */
export function applyCallEvent(
  previous: CallRecord | null,
  event: CallEvent | RecordEvent,
  receivedAt: number,
  deviceReportedPhone: string | null = null,
): CallRecord {
  const facts = mergeCallEvent(previous, event, receivedAt, deviceReportedPhone);
  return { ...facts, attachment: nextAttachment(previous, facts) };
}
