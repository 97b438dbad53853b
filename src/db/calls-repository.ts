import { sql, type Selectable } from 'kysely';
import { describeCall, type CallDirection, type CallOutcome } from '../calls/call-details.ts';
import { FINAL_CALL_STATUSES, type AttachmentState, type CallFacts, type CallRecord } from '../calls/call-state.ts';
import type { RecordingFacts } from '../calls/recording.ts';
import { AppError } from '../errors.ts';
import type { DbOrTrx } from './database.ts';
import { isPostgres } from './dialect.ts';
import type { CallsTable } from './schema.ts';

interface Recording extends RecordingFacts {
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
    ...factColumns(call),
    attachment_state: call.attachment.state,
    attachment_reason: call.attachment.reason,
  };
  await db
    .insertInto('calls')
    .values({ call_id: call.callId, ...facts })
    .onConflict((conflict) => conflict.column('call_id').doUpdateSet(facts))
    .execute();
}

/** The columns of a call's facts, and of what is derived from them for the list filters. */
function factColumns(call: CallFacts) {
  const details = describeCall(call);
  return {
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
    hinted_url: call.hintedUrl,
    statuses_seen: call.statusesSeen.length === 0 ? null : call.statusesSeen.join(','),
    active_at: call.activeAt,
    call_type: call.callType,
    peer_name: call.peerName,
    stated_peer_phone: call.statedPeerPhone,
    device_reported_phone: call.deviceReportedPhone,
    direction_normalized: details.direction,
    peer_phone: details.peerPhone,
    device_phone: details.devicePhone,
    outcome: details.outcome,
  };
}

/**
 * Derives direction, parties and outcome for calls stored before they existed (migration 004,
 * or a replica of an older release writing during a rolling update): every row without an
 * outcome, in batches. Returns how many it filled. Safe alongside event processing: a row the
 * processor saved meanwhile has its outcome, and is left alone.
 */
export async function fillMissingCallDetails(db: DbOrTrx, batchSize = 500): Promise<number> {
  let filled = 0;
  for (;;) {
    const rows = await db.selectFrom('calls').selectAll().where('outcome', 'is', null).limit(batchSize).execute();
    for (const row of rows) {
      const { statuses_seen, direction_normalized, peer_phone, device_phone, outcome } = factColumns(toStoredCall(row));
      await db
        .updateTable('calls')
        .set({ statuses_seen, direction_normalized, peer_phone, device_phone, outcome })
        .where('call_id', '=', row.call_id)
        .where('outcome', 'is', null)
        .execute();
    }
    filled += rows.length;
    if (rows.length < batchSize) return filled;
  }
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
  direction?: CallDirection | undefined;
  outcome?: CallOutcome | undefined;
  deviceId?: string | undefined;
  /** E.164: the peer's or the device's number. */
  phone?: string | undefined;
  /** E.164: the other party's number only (the search box given a number). */
  peerPhone?: string | undefined;
  /** Calls whose whatsapp_call_id starts with this (the search box given anything else). */
  callIdPrefix?: string | undefined;
  /** On first_seen_at (started_at): since inclusive, until exclusive. */
  since?: number | undefined;
  until?: number | undefined;
  limit: number;
  /** The position after which the page starts, from the previous page's `nextCursor`. */
  after?: { firstSeenAt: number; callId: string } | undefined;
}

/** Newest first, keyset-paginated so a page costs the same however deep it is. */
export async function listCalls(db: DbOrTrx, query: CallPageQuery): Promise<{ calls: StoredCall[]; hasMore: boolean }> {
  const rows = await selectCallPage(db, query).execute();
  return { calls: rows.slice(0, query.limit).map(toStoredCall), hasMore: rows.length > query.limit };
}

/** The query of one page (and one row more, to tell whether another page follows); its plans are tested. */
export function selectCallPage(db: DbOrTrx, query: CallPageQuery) {
  let select = db.selectFrom('calls').selectAll();
  if (query.state) select = select.where('attachment_state', '=', query.state);
  if (query.tenant !== undefined) select = select.where('tenant', '=', query.tenant);
  if (query.direction) select = select.where('direction_normalized', '=', query.direction);
  if (query.outcome) select = select.where('outcome', '=', query.outcome);
  if (query.deviceId !== undefined) select = select.where('device_id', '=', query.deviceId);
  if (query.phone !== undefined) {
    const phone = query.phone;
    select = select.where((eb) => eb.or([eb('peer_phone', '=', phone), eb('device_phone', '=', phone)]));
  }
  if (query.peerPhone !== undefined) select = select.where('peer_phone', '=', query.peerPhone);
  if (query.callIdPrefix !== undefined) {
    // A range rather than LIKE: an index walk on both databases (SQLite's LIKE ignores case and
    // so no index serves it). Byte order, which UTF-8 shares with code points: SQLite compares
    // bytes, and PostgreSQL does under the C collation, for which migration 007 has an index.
    const callId = isPostgres(db) ? sql<string>`call_id collate "C"` : sql<string>`call_id`;
    const prefix = query.callIdPrefix;
    const end = prefixRangeEnd(prefix);
    select = select.where(callId, '>=', prefix);
    if (end !== null) select = select.where(callId, '<', end);
  }
  if (query.since !== undefined) select = select.where('first_seen_at', '>=', query.since);
  if (query.until !== undefined) select = select.where('first_seen_at', '<', query.until);
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
  return select
    .orderBy('first_seen_at', 'desc')
    .orderBy('call_id', 'desc')
    .limit(query.limit + 1);
}

/**
 * The first string after every string that starts with `prefix`: its last code point one higher
 * (a code point at the top of Unicode is dropped and the one before it raised; surrogates are
 * skipped). Null when there is none (the prefix is all U+10FFFF): the range is open-ended.
 */
export function prefixRangeEnd(prefix: string): string | null {
  const codePoints = Array.from(prefix, (char) => char.codePointAt(0) as number);
  while (codePoints.length > 0) {
    const last = (codePoints.pop() as number) + 1;
    if (last <= 0x10ffff) {
      codePoints.push(last === 0xd800 ? 0xe000 : last);
      return String.fromCodePoint(...codePoints);
    }
  }
  return null;
}

/** These calls as they are now, newest first; ids of no call are left out. */
export async function findCalls(db: DbOrTrx, callIds: readonly string[]): Promise<StoredCall[]> {
  const ids = callIds.filter((callId) => !callId.includes('\u0000'));
  if (ids.length === 0) return [];
  const rows = await db.selectFrom('calls').selectAll().where('call_id', 'in', ids).orderBy('first_seen_at', 'desc').orderBy('call_id', 'desc').execute();
  return rows.map(toStoredCall);
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
    hintedUrl: row.hinted_url,
    // Rows from before 004 kept only the status they showed.
    statusesSeen: row.statuses_seen === null ? statusesFromStatus(row.status) : row.statuses_seen.split(','),
    activeAt: row.active_at,
    callType: row.call_type,
    peerName: row.peer_name,
    statedPeerPhone: row.stated_peer_phone,
    deviceReportedPhone: row.device_reported_phone,
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

function statusesFromStatus(status: string | null): string[] {
  return status !== null && (FINAL_CALL_STATUSES.has(status) || status === 'CONNECTION_LOST') ? [status] : [];
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
