import { describeCall } from '../calls/call-details.ts';
import type { StoredCall } from '../db/calls-repository.ts';
import type { TimelineEvent } from '../db/events-repository.ts';
import type { FetchJob } from '../db/fetch-jobs-repository.ts';
import type { Delivery } from '../db/deliveries-repository.ts';

const isoTime = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

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
    started_at: isoTime(call.firstSeenAt),
    answered_at: isoTime(details.answeredAt),
    ended_at: isoTime(call.endedAt),
    direction_raw: call.direction,
    caller: call.caller,
    receiver: call.receiver,
    id_session: call.deviceId,
    status: call.status,
    duration: call.duration,
    record_status: call.recordStatus,
    record_url: call.recordUrl,
    record_url_hint: call.hintedUrl,
    first_seen_at: isoTime(call.firstSeenAt),
    last_seen_at: isoTime(call.lastSeenAt),
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
      attached_at: isoTime(recording?.attachedAt ?? null),
      url: recording?.key ? `/api/calls/${encodeURIComponent(call.callId)}/recording` : null,
      ...(job
        ? { attempts: job.attempts, next_attempt_at: isoTime(job.runAt), give_up_at: isoTime(job.deadlineAt), last_error: job.lastError }
        : {}),
    },
  };
}

export function presentEvent(event: TimelineEvent) {
  return { event_id: event.eventId, type: event.type, received_at: isoTime(event.receivedAt), payload: event.payload };
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
    next_attempt_at: delivery.state === 'pending' ? isoTime(delivery.runAt) : null,
    give_up_at: delivery.state === 'pending' ? isoTime(delivery.deadlineAt) : null,
    created_at: isoTime(delivery.createdAt),
    delivered_at: isoTime(delivery.deliveredAt),
    external_ids: delivery.externalIds,
  };
}
