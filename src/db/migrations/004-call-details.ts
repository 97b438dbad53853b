import { sql, type Kysely } from 'kysely';
import { isPostgres } from '../dialect.ts';

// Frozen, like every migration. What a person asks about a call (direction, the other party, the
// outcome) and the facts it is read from. Only columns and indexes: rows from before get their
// derived values at start-up (db/calls-repository.ts fillMissingCallDetails), from the same pure
// code that derives them for new events, so an upgraded database cannot disagree with a new one.
// SQLite cannot add a column `if not exists` and runs this outside a transaction, so a run cut
// short is completed by looking first; PostgreSQL runs it in a transaction.
const TEXT_COLUMNS = [
  'hinted_url', 'statuses_seen', 'call_type', 'peer_name', 'stated_peer_phone', 'device_reported_phone',
  'direction_normalized', 'peer_phone', 'device_phone', 'outcome',
];

/** Each list filter walks its own index in the list's order (newest first), so a page costs its size. */
const FILTER_INDEXES: Record<string, string> = {
  calls_direction_newest: 'direction_normalized',
  calls_outcome_newest: 'outcome',
  calls_device_newest: 'device_id',
  calls_peer_phone_newest: 'peer_phone',
  calls_device_phone_newest: 'device_phone',
};

export async function up(db: Kysely<any>): Promise<void> {
  const existing = isPostgres(db)
    ? new Set<string>()
    : new Set((await sql<{ name: string }>`select name from pragma_table_info('calls')`.execute(db)).rows.map((row) => row.name));
  for (const column of TEXT_COLUMNS) {
    if (!existing.has(column)) await db.schema.alterTable('calls').addColumn(column, 'text').execute();
  }
  if (!existing.has('active_at')) await db.schema.alterTable('calls').addColumn('active_at', 'bigint').execute();
  for (const [index, column] of Object.entries(FILTER_INDEXES)) {
    await db.schema.createIndex(index).ifNotExists().on('calls').columns([column, 'first_seen_at desc', 'call_id desc']).execute();
  }
}

export async function down(db: Kysely<any>): Promise<void> {
  for (const index of Object.keys(FILTER_INDEXES)) await db.schema.dropIndex(index).ifExists().execute();
  for (const column of [...TEXT_COLUMNS, 'active_at']) await db.schema.alterTable('calls').dropColumn(column).execute();
}
