import { sql, type Transaction } from 'kysely';
import type { DbOrTrx } from './database.ts';
import { isPostgres } from './dialect.ts';
import type { Database } from './schema.ts';

export interface NewEvent {
  eventId: string;
  receivedAt: number;
  type: string;
  callId: string | null;
  payload: string;
  /** The label of the device-group token the webhook came with; null for WEBHOOK_TOKEN. */
  tenant: string | null;
}

export interface StoredEvent extends NewEvent {
  seq: number;
}

export interface TimelineEvent {
  eventId: string;
  receivedAt: number;
  type: string;
  payload: unknown;
}

/** One statement for many events: atomic, and one commit (one fsync) for all of them. */
export async function insertEvents(db: DbOrTrx, events: NewEvent[]): Promise<void> {
  await db
    .insertInto('events')
    .values(
      events.map((event) => ({
        event_id: event.eventId,
        received_at: event.receivedAt,
        type: event.type,
        call_id: event.callId,
        payload: event.payload,
        tenant: event.tenant,
      })),
    )
    .execute();
}

export async function listUnprocessedEvents(db: DbOrTrx, limit: number): Promise<StoredEvent[]> {
  const rows = await db
    .selectFrom('events')
    .select(['seq', 'event_id', 'received_at', 'type', 'call_id', 'payload', 'tenant'])
    .where('processed_at', 'is', null)
    .orderBy('seq')
    .limit(limit)
    .execute();
  return rows.map((row) => ({
    seq: row.seq,
    eventId: row.event_id,
    receivedAt: row.received_at,
    type: row.type,
    callId: row.call_id,
    payload: row.payload,
    tenant: row.tenant,
  }));
}

export async function markEventProcessed(db: DbOrTrx, seq: number, processedAt: number, error: string | null): Promise<void> {
  await db
    .updateTable('events')
    .set({ processed_at: processedAt, processing_error: error })
    .where('seq', '=', seq)
    .where('processed_at', 'is', null)
    .execute();
}

// Any fixed number, the same in every replica: it names the lock, nothing else.
const EVENT_PROCESSING_LOCK = 0x77617670;

/**
 * Makes replicas sharing a PostgreSQL database apply events one transaction at a time (held
 * until commit). SQLite has one writer at a time already.
 */
export async function lockEventProcessing(trx: Transaction<Database>): Promise<void> {
  if (!isPostgres(trx)) return;
  // Never wait for ever on a replica that holds it and hangs: fail (a transient error, tried
  // again a second later) while the server ends that replica's session.
  await sql`set local lock_timeout = '15s'`.execute(trx);
  await sql`select pg_advisory_xact_lock(${EVENT_PROCESSING_LOCK})`.execute(trx);
}

/**
 * Deletes up to `limit` processed events received before `before`, oldest first; returns how
 * many. Small batches keep each delete short on the one SQLite connection intake also uses.
 */
export async function pruneProcessedEvents(db: DbOrTrx, before: number, limit: number): Promise<number> {
  const result = await db
    .deleteFrom('events')
    .where('seq', 'in', (eb) =>
      eb
        .selectFrom('events')
        .select('seq')
        .where('received_at', '<', before)
        .where('processed_at', 'is not', null)
        .orderBy('seq')
        .limit(limit),
    )
    .executeTakeFirst();
  return Number(result.numDeletedRows);
}

export async function markEventsProcessed(db: DbOrTrx, seqs: number[], processedAt: number): Promise<void> {
  if (seqs.length === 0) return;
  await db.updateTable('events').set({ processed_at: processedAt }).where('seq', 'in', seqs).execute();
}

export async function listCallEvents(db: DbOrTrx, callId: string): Promise<TimelineEvent[]> {
  const rows = await db
    .selectFrom('events')
    .select(['event_id', 'received_at', 'type', 'payload'])
    .where('call_id', '=', callId)
    .orderBy('seq')
    .execute();
  return rows.map((row) => ({
    eventId: row.event_id,
    receivedAt: row.received_at,
    type: row.type,
    payload: parseStoredPayload(row.payload),
  }));
}

/** Raw events are stored as received; one that is not JSON any more is shown as its text. */
function parseStoredPayload(payload: string): unknown {
  try {
    return JSON.parse(payload) as unknown;
  } catch {
    return payload;
  }
}

/** When the newest event arrived; the primary key orders events by arrival. */
export async function findLatestEventReceivedAt(db: DbOrTrx): Promise<number | null> {
  const row = await db.selectFrom('events').select('received_at').orderBy('seq', 'desc').limit(1).executeTakeFirst();
  return row ? Number(row.received_at) : null;
}
