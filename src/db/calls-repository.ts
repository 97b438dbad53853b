import type { Selectable } from 'kysely';
import type { AttachmentState, CallRecord } from '../calls/call-state.ts';
import type { RecordingFacts } from '../calls/recording.ts';
import { AppError } from '../errors.ts';
import type { DbOrTrx } from './database.ts';
import { isPostgres } from './dialect.ts';
import type { CallsTable } from './schema.ts';

export interface Recording extends RecordingFacts {
  /** Null once RECORDING_RETENTION deleted the file: the facts stay as a record. */
  key: string | null;
  attachedAt: number;
}

export interface StoredCall extends CallRecord {
  recording: Recording | null;
  tenant: string | null;
}

/** `forUpdate`: inside a transaction, hold the row until commit (PostgreSQL; SQLite has one writer). */
export async function findCall(db: DbOrTrx, callId: string, { forUpdate = false } = {}): Promise<StoredCall | null> {
  // No call id holds a control character (intake refuses them), and PostgreSQL would fail on a
  // NUL (GET /api/calls/%00 answered 500): there is no such call.
  if (callId.includes('\u0000')) return null;
  const row = await db
    .selectFrom('calls')
    .selectAll()
    .where('call_id', '=', callId)
    .$if(forUpdate && isPostgres(db), (query) => query.forUpdate())
    .executeTakeFirst();
  return row ? toStoredCall(row) : null;
}

/** Writes what the events say about a call; never touches a recording already attached. */
export async function saveCall(db: DbOrTrx, call: CallRecord): Promise<void> {
  const facts = {
    direction: call.direction,
    caller: call.caller,
    receiver: call.receiver,
    device_id: call.deviceId,
    status: call.status,
    was_connected: call.wasConnected ? 1 : 0,
    duration: call.duration,
    record_status: call.recordStatus,
    record_url: call.recordUrl,
    first_seen_at: call.firstSeenAt,
    last_seen_at: call.lastSeenAt,
    ended_at: call.endedAt,
    attachment_state: call.attachment.state,
    attachment_reason: call.attachment.reason,
  };
  await db
    .insertInto('calls')
    .values({ call_id: call.callId, ...facts })
    .onConflict((conflict) => conflict.column('call_id').doUpdateSet(facts))
    .execute();
}

/** Records the recording on the call; false when one was attached already. */
export async function attachRecording(db: DbOrTrx, callId: string, recording: Recording): Promise<boolean> {
  const result = await db
    .updateTable('calls')
    .set({
      attachment_state: 'attached',
      attachment_reason: null,
      recording_key: recording.key,
      recording_size: recording.size,
      recording_sha256: recording.sha256,
      recording_content_type: recording.contentType,
      recording_container: recording.container,
      recording_codec: recording.codec,
      recording_duration_seconds: recording.durationSeconds,
      attached_at: recording.attachedAt,
    })
    .where('call_id', '=', callId)
    .where('attachment_state', 'not in', ['attached', 'expired'])
    .executeTakeFirst();
  return result.numUpdatedRows > 0n;
}

export async function failAttachment(db: DbOrTrx, callId: string, reason: string): Promise<boolean> {
  return changeAttachmentState(db, callId, 'pending', 'failed', reason);
}

export async function resetFailedAttachment(db: DbOrTrx, callId: string): Promise<boolean> {
  return changeAttachmentState(db, callId, 'failed', 'pending', null);
}

/** Up to `limit` failed calls, oldest first: the next batch an operator's retry of all failed takes. */
export async function listFailedCallIds(db: DbOrTrx, limit: number): Promise<string[]> {
  const rows = await db
    .selectFrom('calls')
    .select('call_id')
    .where('attachment_state', '=', 'failed')
    .orderBy('first_seen_at')
    .limit(limit)
    .$if(isPostgres(db), (query) => query.forUpdate().skipLocked())
    .execute();
  return rows.map((row) => row.call_id);
}

async function changeAttachmentState(
  db: DbOrTrx,
  callId: string,
  from: AttachmentState,
  to: AttachmentState,
  reason: string | null,
): Promise<boolean> {
  const result = await db
    .updateTable('calls')
    .set({ attachment_state: to, attachment_reason: reason })
    .where('call_id', '=', callId)
    .where('attachment_state', '=', from)
    .executeTakeFirst();
  return result.numUpdatedRows > 0n;
}

export interface CallPageQuery {
  state?: AttachmentState | undefined;
  tenant?: string | undefined;
  limit: number;
  /** The position after which the page starts, from the previous page's `nextCursor`. */
  after?: { firstSeenAt: number; callId: string } | undefined;
}

/** Newest first, keyset-paginated so a page costs the same however deep it is. */
export async function listCalls(db: DbOrTrx, query: CallPageQuery): Promise<{ calls: StoredCall[]; hasMore: boolean }> {
  let select = db.selectFrom('calls').selectAll();
  if (query.state) select = select.where('attachment_state', '=', query.state);
  if (query.tenant !== undefined) select = select.where('tenant', '=', query.tenant);
  if (query.after) {
    const { firstSeenAt, callId } = query.after;
    // Never in a cursor this API gave (call ids hold no control character); PostgreSQL would fail on it.
    if (callId.includes('\u0000')) throw new AppError('cursor is not one this API returned', { code: 'INVALID_CURSOR', statusCode: 400 });
    select = select.where((eb) =>
      eb.or([
        eb('first_seen_at', '<', firstSeenAt),
        eb.and([eb('first_seen_at', '=', firstSeenAt), eb('call_id', '<', callId)]),
      ]),
    );
  }
  const rows = await select
    .orderBy('first_seen_at', 'desc')
    .orderBy('call_id', 'desc')
    .limit(query.limit + 1)
    .execute();
  return { calls: rows.slice(0, query.limit).map(toStoredCall), hasMore: rows.length > query.limit };
}

function toStoredCall(row: Selectable<CallsTable>): StoredCall {
  return {
    callId: row.call_id,
    direction: row.direction,
    caller: row.caller,
    receiver: row.receiver,
    deviceId: row.device_id,
    status: row.status,
    wasConnected: row.was_connected === 1,
    duration: row.duration,
    recordStatus: row.record_status,
    recordUrl: row.record_url,
    firstSeenAt: row.first_seen_at,
    lastSeenAt: row.last_seen_at,
    endedAt: row.ended_at,
    attachment: { state: row.attachment_state as AttachmentState, reason: row.attachment_reason },
    tenant: row.tenant,
    recording:
      row.recording_sha256 === null
        ? null
        : {
            key: row.recording_key,
            size: row.recording_size ?? 0,
            sha256: row.recording_sha256 ?? '',
            contentType: row.recording_content_type ?? 'application/octet-stream',
            container: row.recording_container,
            codec: row.recording_codec,
            durationSeconds: row.recording_duration_seconds,
            attachedAt: row.attached_at ?? 0,
          },
  };
}

export async function countCallsByAttachmentState(db: DbOrTrx): Promise<Map<AttachmentState, number>> {
  const rows = await db
    .selectFrom('calls')
    .select((eb) => ['attachment_state', eb.fn.countAll<number | string | bigint>().as('count')])
    .groupBy('attachment_state')
    .execute();
  return new Map(rows.map((row) => [row.attachment_state as AttachmentState, Number(row.count)]));
}

/** Recordings attached before a moment, oldest first: what RECORDING_RETENTION deletes next. */
export async function listRecordingsAttachedBefore(db: DbOrTrx, before: number, limit: number): Promise<{ callId: string; key: string }[]> {
  const rows = await db
    .selectFrom('calls')
    .select(['call_id', 'recording_key'])
    .where('attachment_state', '=', 'attached')
    .where('attached_at', '<', before)
    .orderBy('attached_at')
    .limit(limit)
    .execute();
  return rows.flatMap((row) => (row.recording_key === null ? [] : [{ callId: row.call_id, key: row.recording_key }]));
}

/** Marks a call's recording as deleted; its size, sha256 and attach time stay as a record. */
export async function expireRecording(db: DbOrTrx, callId: string, key: string, reason: string): Promise<boolean> {
  const result = await db
    .updateTable('calls')
    .set({ attachment_state: 'expired', attachment_reason: reason, recording_key: null })
    .where('call_id', '=', callId)
    .where('recording_key', '=', key)
    .where('attachment_state', '=', 'attached')
    .executeTakeFirst();
  return result.numUpdatedRows > 0n;
}

/** The device group (tenant) of a call is that of the first webhook with a group token; it never changes after. */
export async function setCallTenant(db: DbOrTrx, callId: string, tenant: string): Promise<void> {
  await db.updateTable('calls').set({ tenant }).where('call_id', '=', callId).where('tenant', 'is', null).execute();
}
