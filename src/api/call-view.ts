import { describeCall } from '../calls/call-details.ts';
import type { StoredCall } from '../db/calls-repository.ts';
import type { TimelineEvent } from '../db/events-repository.ts';
import type { FetchJob } from '../db/fetch-jobs-repository.ts';
import { DELIVERY_STATES, type Delivery } from '../db/deliveries-repository.ts';
import { Type } from 'typebox';
import { ATTACHMENT_STATES } from '../calls/call-state.ts';
import { CALL_DIRECTIONS, CALL_OUTCOMES } from '../calls/call-details.ts';
import { DELIVERY_KINDS } from '../calls/delivery-plan.ts';
import { IsoTime, nullable, stringEnum, toIsoTime } from '../http/schemas.ts';

const NullableString = nullable(Type.String());
const NullableNumber = nullable(Type.Number());

/** What presentCall answers: every field always there, null when unknown. */
export const CallSchema = Type.Object(
  {
    whatsapp_call_id: Type.String(),
    direction: nullable(stringEnum(CALL_DIRECTIONS)),
    outcome: stringEnum(CALL_OUTCOMES),
    peer_phone: nullable(Type.String({ description: 'The other party, E.164' })),
    peer_phone_raw: NullableString,
    peer_name: NullableString,
    device_phone: nullable(Type.String({ description: 'Our side, E.164' })),
    device_phone_raw: NullableString,
    call_type: NullableString,
    started_at: IsoTime,
    answered_at: IsoTime,
    ended_at: IsoTime,
    direction_raw: nullable(Type.String({ description: "WaVoIP's own `direction`" })),
    caller: NullableString,
    receiver: NullableString,
    id_session: NullableString,
    status: NullableString,
    duration: NullableNumber,
    record_status: NullableString,
    record_url: NullableString,
    record_url_hint: NullableString,
    first_seen_at: IsoTime,
    last_seen_at: IsoTime,
    tenant: NullableString,
    attachment: Type.Object(
      {
        state: stringEnum(ATTACHMENT_STATES),
        reason: NullableString,
        size: NullableNumber,
        sha256: NullableString,
        content_type: NullableString,
        container: NullableString,
        codec: NullableString,
        duration_seconds: NullableNumber,
        attached_at: IsoTime,
        url: nullable(Type.String({ description: 'Where the recording is served (GET /api/calls/{id}/recording)' })),
        // Only while the call has a fetch job.
        attempts: Type.Optional(Type.Integer()),
        next_attempt_at: Type.Optional(IsoTime),
        give_up_at: Type.Optional(IsoTime),
        last_error: Type.Optional(NullableString),
      },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);

export const DeliverySchema = Type.Object(
  {
    id: Type.String(),
    destination: Type.String(),
    kind: stringEnum(DELIVERY_KINDS),
    reason: NullableString,
    state: stringEnum(DELIVERY_STATES),
    attempts: Type.Integer(),
    last_error: NullableString,
    next_attempt_at: IsoTime,
    give_up_at: IsoTime,
    created_at: IsoTime,
    delivered_at: IsoTime,
    external_ids: nullable(Type.Object({}, { additionalProperties: true, description: "The destination's own ids (Chatwoot's conversation and message)" })),
  },
  { additionalProperties: false },
);

export const EventSchema = Type.Object(
  {
    event_id: Type.String(),
    type: Type.String(),
    received_at: IsoTime,
    payload: Type.Unknown({ description: 'The webhook body exactly as WaVoIP sent it' }),
  },
  { additionalProperties: false },
);

export const CallDetailsSchema = Type.Object(
  { ...CallSchema.properties, deliveries: Type.Array(DeliverySchema), events: Type.Array(EventSchema) },
  { additionalProperties: false },
);

/**
 * A call as the API shows it: first what a person asks (which way, who, what happened, when),
 * then WaVoIP's own fields as they came (`direction_raw` is its `direction`), the attachment below.
 */
export function presentCall(call: StoredCall, job?: FetchJob | null) {
  const recording = call.recording;
  const details = describeCall(call);
  return {
    whatsapp_call_id: call.callId,
    direction: details.direction,
    outcome: details.outcome,
    peer_phone: details.peerPhone,
    peer_phone_raw: details.peerPhoneRaw,
    peer_name: call.peerName,
    device_phone: details.devicePhone,
    device_phone_raw: details.devicePhoneRaw,
    call_type: call.callType,
    started_at: toIsoTime(call.firstSeenAt),
    answered_at: toIsoTime(details.answeredAt),
    ended_at: toIsoTime(call.endedAt),
    direction_raw: call.direction,
    caller: call.caller,
    receiver: call.receiver,
    id_session: call.deviceId,
    status: call.status,
    duration: call.duration,
    record_status: call.recordStatus,
    record_url: call.recordUrl,
    record_url_hint: call.hintedUrl,
    first_seen_at: toIsoTime(call.firstSeenAt),
    last_seen_at: toIsoTime(call.lastSeenAt),
    tenant: call.tenant,
    attachment: {
      state: call.attachment.state,
      reason: call.attachment.reason,
      size: recording?.size ?? null,
      sha256: recording?.sha256 ?? null,
      content_type: recording?.contentType ?? null,
      container: recording?.container ?? null,
      codec: recording?.codec ?? null,
      duration_seconds: recording?.durationSeconds ?? null,
      attached_at: toIsoTime(recording?.attachedAt ?? null),
      url: recording?.key ? `/api/calls/${encodeURIComponent(call.callId)}/recording` : null,
      ...(job
        ? { attempts: job.attempts, next_attempt_at: toIsoTime(job.runAt), give_up_at: toIsoTime(job.deadlineAt), last_error: job.lastError }
        : {}),
    },
  };
}

export function presentEvent(event: TimelineEvent) {
  return { event_id: event.eventId, type: event.type, received_at: toIsoTime(event.receivedAt), payload: event.payload };
}

/** A delivery as the API shows it: where, what, and how far it got. */
export function presentDelivery(delivery: Delivery) {
  return {
    id: delivery.id,
    destination: delivery.destination,
    kind: delivery.kind,
    reason: delivery.reason,
    state: delivery.state,
    attempts: delivery.attempts,
    last_error: delivery.lastError,
    next_attempt_at: delivery.state === 'pending' ? toIsoTime(delivery.runAt) : null,
    give_up_at: delivery.state === 'pending' ? toIsoTime(delivery.deadlineAt) : null,
    created_at: toIsoTime(delivery.createdAt),
    delivered_at: toIsoTime(delivery.deliveredAt),
    external_ids: delivery.externalIds,
  };
}
