import { sql, type Kysely } from 'kysely';
import { isPostgres } from '../dialect.ts';

// Frozen: typed against Kysely<any> so later schema changes never alter what this did.
// Kysely runs SQLite migrations outside a transaction, so every statement is `if not exists`:
// a migration interrupted half-way simply completes on the next start. On PostgreSQL Kysely
// runs them in one transaction, under an advisory lock that makes concurrent starts wait.
export async function up(db: Kysely<any>): Promise<void> {
  // Where the two differ: PostgreSQL has no AUTOINCREMENT, its `real` is single precision, and
  // its `integer` is 32-bit (job versions are random 47-bit numbers).
  const postgres = isPostgres(db);
  const float = postgres ? 'double precision' : 'real';
  const events = db.schema.createTable('events').ifNotExists();
  await (postgres
    ? events.addColumn('seq', 'bigserial', (column) => column.primaryKey())
    : events.addColumn('seq', 'integer', (column) => column.primaryKey().autoIncrement())
  )
    .addColumn('event_id', 'text', (column) => column.notNull().unique())
    .addColumn('received_at', 'bigint', (column) => column.notNull())
    .addColumn('type', 'text', (column) => column.notNull())
    .addColumn('call_id', 'text')
    .addColumn('payload', 'text', (column) => column.notNull())
    .addColumn('processed_at', 'bigint')
    .addColumn('processing_error', 'text')
    .execute();
  await db.schema.createIndex('events_call_id')
    .ifNotExists().on('events').columns(['call_id', 'seq']).execute();
  await db.schema
    .createIndex('events_unprocessed')
    .ifNotExists()
    .on('events')
    .column('seq')
    .where(sql.ref('processed_at'), 'is', null)
    .execute();

  await db.schema
    .createTable('calls')
    .ifNotExists()
    .addColumn('call_id', 'text', (column) => column.primaryKey())
    .addColumn('direction', 'text')
    .addColumn('caller', 'text')
    .addColumn('receiver', 'text')
    .addColumn('device_id', 'text')
    .addColumn('status', 'text')
    .addColumn('was_connected', 'integer', (column) => column.notNull().defaultTo(0))
    .addColumn('duration', float)
    .addColumn('record_status', 'text')
    .addColumn('record_url', 'text')
    .addColumn('first_seen_at', 'bigint', (column) => column.notNull())
    .addColumn('last_seen_at', 'bigint', (column) => column.notNull())
    .addColumn('ended_at', 'bigint')
    .addColumn('attachment_state', 'text', (column) => column.notNull())
    .addColumn('attachment_reason', 'text')
    .addColumn('recording_key', 'text')
    .addColumn('recording_size', 'bigint')
    .addColumn('recording_sha256', 'text')
    .addColumn('recording_content_type', 'text')
    .addColumn('recording_container', 'text')
    .addColumn('recording_codec', 'text')
    .addColumn('recording_duration_seconds', float)
    .addColumn('attached_at', 'bigint')
    .execute();
  await db.schema.createIndex('calls_newest')
    .ifNotExists().on('calls').columns(['first_seen_at desc', 'call_id desc']).execute();
  await db.schema
    .createIndex('calls_state_newest')
    .ifNotExists()
    .on('calls')
    .columns(['attachment_state', 'first_seen_at desc', 'call_id desc'])
    .execute();

  await db.schema
    .createTable('fetch_jobs')
    .ifNotExists()
    .addColumn('call_id', 'text', (column) => column.primaryKey().references('calls.call_id').onDelete('cascade'))
    .addColumn('run_at', 'bigint', (column) => column.notNull())
    .addColumn('deadline_at', 'bigint', (column) => column.notNull())
    .addColumn('attempts', 'integer', (column) => column.notNull().defaultTo(0))
    .addColumn('last_error', 'text')
    .addColumn('locked_until', 'bigint')
    .addColumn('locked_by', 'text')
    .addColumn('version', postgres ? 'bigint' : 'integer', (column) => column.notNull().defaultTo(0))
    .execute();
  await db.schema.createIndex('fetch_jobs_run_at')
    .ifNotExists().on('fetch_jobs').column('run_at').execute();

  await db.schema
    .createTable('devices')
    .ifNotExists()
    .addColumn('device_id', 'text', (column) => column.primaryKey())
    .addColumn('phone', 'text')
    .addColumn('status', 'text')
    .addColumn('last_seen_at', 'bigint', (column) => column.notNull())
    .execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  for (const table of ['devices', 'fetch_jobs', 'calls', 'events']) {
    await db.schema.dropTable(table).execute();
  }
}
