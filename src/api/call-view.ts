import type { StoredCall } from '../db/calls-repository.ts';
import type { TimelineEvent } from '../db/events-repository.ts';
import type { FetchJob } from '../db/fetch-jobs-repository.ts';

const isoTime = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

/** A call as the API shows it: WaVoIP's field names at the top level, the attachment below. */
export function presentCall(call: StoredCall, job?: FetchJob | null) {
  const recording = call.recording;
  return {
    whatsapp_call_id: call.callId,
    direction: call.direction,
    caller: call.caller,
    receiver: call.receiver,
    id_session: call.deviceId,
    status: call.status,
    duration: call.duration,
    record_status: call.recordStatus,
    record_url: call.recordUrl,
    first_seen_at: isoTime(call.firstSeenAt),
    last_seen_at: isoTime(call.lastSeenAt),
    ended_at: isoTime(call.endedAt),
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
