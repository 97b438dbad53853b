/**
 * Turns a WaVoIP webhook body, in every shape seen in the wild, into one typed event.
 * Pure: no I/O. See the API notes: `whatsapp_call_id` is a number or a string, a RECORD's
 * status may come in `status`, a CALL's `type` may be overwritten by `HUMANIZED`/`ROBOTIC`,
 * and unknown fields, statuses and event types must be accepted.
 */
export interface CallEvent {
  type: 'CALL';
  callId: string;
  status: string | null;
  recordStatus: string | null;
  recordUrl: string | null;
  direction: string | null;
  caller: string | null;
  receiver: string | null;
  deviceId: string | null;
  duration: number | null;
  /** `HUMANIZED` or `ROBOTIC`: the CALL schema's second `type` key, when it is the one that arrived. */
  callType: string | null;
  /** From a `peer` object (`phone`, `display_name`), which some senders add. */
  peerPhone: string | null;
  peerName: string | null;
}

export interface RecordEvent {
  type: 'RECORD';
  callId: string;
  recordStatus: string | null;
  recordUrl: string | null;
  deviceId: string | null;
}

interface DeviceEvent {
  type: 'DEVICE';
  deviceId: string | null;
  phone: string | null;
  status: string | null;
}

interface UnknownEvent {
  type: 'UNKNOWN';
  /** The `type` the sender gave, if any, kept for the log line. */
  declaredType: string | null;
}

export type WebhookEvent = CallEvent | RecordEvent | DeviceEvent | UnknownEvent;

export type NormalizeResult =
  | { ok: true; event: WebhookEvent }
  | { ok: false; field: string; error: string };

export const MAX_CALL_ID_LENGTH = 128;

/** `type` values the CALL schema's second `type` key (call kind) can leave behind. */
const CALL_KIND_TYPES = new Set(['HUMANIZED', 'ROBOTIC']);
const CALL_ONLY_FIELDS = ['direction', 'caller', 'receiver', 'duration', 'peer'];
const KNOWN_CALL_STATUSES = new Set([
  'NONE', 'INCOMING_RING', 'OUTGOING_RING', 'OUTGOING_CALLING', 'CALLING', 'CONNECTING', 'CONNECTION_LOST', 'ACTIVE',
  'HANDLED_REMOTELY', 'ENDED', 'REJECTED', 'REMOTE_CALL_IN_PROGRESS', 'FAILED', 'NOT_ANSWERED',
]);

export function normalizeWebhookPayload(body: unknown): NormalizeResult {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    return { ok: false, field: 'body', error: 'body must be a JSON object' };
  }
  const payload = body as Record<string, unknown>;
  const declaredType = readText(payload.type);
  const type = classifyEvent(payload, declaredType?.toUpperCase() ?? null);

  if (type === 'DEVICE') {
    return {
      ok: true,
      event: { type, deviceId: readText(payload.id_session), phone: readText(payload.phone), status: readText(payload.status) },
    };
  }
  if (type === 'UNKNOWN') return { ok: true, event: { type, declaredType } };

  const callId = readCallId(payload.whatsapp_call_id);
  if (!callId.ok) return { ok: false, field: 'whatsapp_call_id', error: `${type} event: ${callId.error}` };

  const deviceId = readText(payload.id_session);
  const recordUrl = readText(payload.record_url);
  if (type === 'RECORD') {
    return {
      ok: true,
      event: {
        type,
        callId: callId.value,
        recordStatus: readStatus(payload.record_status) ?? readStatus(payload.status),
        recordUrl,
        deviceId,
      },
    };
  }
  return {
    ok: true,
    event: {
      type,
      callId: callId.value,
      status: readStatus(payload.status),
      recordStatus: readStatus(payload.record_status),
      recordUrl,
      direction: readStatus(payload.direction),
      caller: readText(payload.caller),
      receiver: readText(payload.receiver),
      deviceId,
      duration: readDuration(payload.duration),
      callType: declaredType !== null && CALL_KIND_TYPES.has(declaredType.toUpperCase()) ? declaredType.toUpperCase() : null,
      ...readPeer(payload.peer),
    },
  };
}

function readPeer(value: unknown): { peerPhone: string | null; peerName: string | null } {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return { peerPhone: null, peerName: null };
  const peer = value as Record<string, unknown>;
  return { peerPhone: readText(peer.phone), peerName: readText(peer.display_name)?.slice(0, 256) ?? null };
}

function classifyEvent(payload: Record<string, unknown>, declaredType: string | null): WebhookEvent['type'] {
  if (declaredType === 'CALL' || declaredType === 'RECORD' || declaredType === 'DEVICE') return declaredType;
  if (declaredType !== null && !CALL_KIND_TYPES.has(declaredType)) return 'UNKNOWN';
  // The CALL schema's second `type` key overwrote the first: still a CALL.
  if (declaredType !== null) return 'CALL';
  // No type at all: tell the event by its fields.
  if (payload.whatsapp_call_id === undefined) {
    return payload.id_session !== undefined && payload.phone !== undefined ? 'DEVICE' : 'UNKNOWN';
  }
  const status = readStatus(payload.status);
  const looksLikeCall =
    CALL_ONLY_FIELDS.some((field) => payload[field] !== undefined) || (status !== null && KNOWN_CALL_STATUSES.has(status));
  return looksLikeCall ? 'CALL' : 'RECORD';
}

function readCallId(value: unknown): { ok: true; value: string } | { ok: false; error: string } {
  if (value === undefined || value === null) return { ok: false, error: 'whatsapp_call_id is required' };
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value) || value < 0) {
      return { ok: false, error: 'whatsapp_call_id must be a string or a non-negative integer below 2^53' };
    }
    return { ok: true, value: String(value) };
  }
  if (typeof value !== 'string') return { ok: false, error: 'whatsapp_call_id must be a string or a number' };
  const text = value.trim();
  if (text === '') return { ok: false, error: 'whatsapp_call_id must not be empty' };
  if (text.length > MAX_CALL_ID_LENGTH) {
    return { ok: false, error: `whatsapp_call_id must be at most ${MAX_CALL_ID_LENGTH} characters` };
  }
  if (/[\u0000-\u001f\u007f-\u009f]/.test(text)) return { ok: false, error: 'whatsapp_call_id must not contain control characters' };
  // A lone surrogate (from a "\ud800" escape) has no UTF-8 form: no URL or file name could carry it.
  if (/[\ud800-\udfff]/u.test(text)) return { ok: false, error: 'whatsapp_call_id must be valid Unicode text' };
  // URL parsers read these as path steps: the call's API URL could never reach it.
  if (text === '.' || text === '..') return { ok: false, error: 'whatsapp_call_id must not be "." or ".."' };
  return { ok: true, value: text };
}

/**
 * Optional fields of an unexpected type are read as absent rather than refused: the raw
 * payload is kept anyway, and refusing would lose the whole event over one cosmetic field.
 */
function readText(value: unknown): string | null {
  if (typeof value === 'number' && Number.isFinite(value)) return String(value);
  if (typeof value !== 'string') return null;
  const text = value.trim();
  return text === '' ? null : text.slice(0, 2048);
}

function readStatus(value: unknown): string | null {
  return readText(value)?.toUpperCase().slice(0, 64) ?? null;
}

function readDuration(value: unknown): number | null {
  const seconds = typeof value === 'string' && /^\d+(\.\d+)?$/.test(value.trim()) ? Number(value) : value;
  return typeof seconds === 'number' && Number.isFinite(seconds) && seconds >= 0 ? seconds : null;
}
