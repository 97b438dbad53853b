import { sql, type Kysely } from 'kysely';
import { isPostgres } from '../dialect.ts';

// Frozen, like every migration. The outbox of deliveries to destinations (Chatwoot, outbound
// webhooks), written in the same transaction as the call change that causes each, and the state
// of each destination (blocked by wrong settings, or disabled by its receiver). Every statement
// is `if not exists`: SQLite runs this outside a transaction, and a run cut short completes.
export async function up(db: Kysely<any>): Promise<void> {
  const postgres = isPostgres(db);
  await db.schema
    .createTable('deliveries')
    .ifNotExists()
    .addColumn('id', 'text', (column) => column.primaryKey())
    .addColumn('call_id', 'text', (column) => column.notNull().references('calls.call_id').onDelete('cascade'))
    .addColumn('destination', 'text', (column) => column.notNull())
    .addColumn('kind', 'text', (column) => column.notNull())
    // `kind` for what a change of the call planned (told once), `kind@<id>` for a redelivery.
    .addColumn('fact', 'text', (column) => column.notNull())
    .addColumn('reason', 'text')
    // Per call and destination: a delivery waits for every earlier one to be settled.
    .addColumn('position', 'integer', (column) => column.notNull())
    // Deliveries sharing a key never run at once (one Chatwoot contact, say).
    .addColumn('serial_key', 'text')
    .addColumn('state', 'text', (column) => column.notNull())
    .addColumn('attempts', 'integer', (column) => column.notNull().defaultTo(0))
    .addColumn('run_at', 'bigint', (column) => column.notNull())
    .addColumn('deadline_at', 'bigint', (column) => column.notNull())
    .addColumn('last_error', 'text')
    // 1 when an attempt's answer was lost: the destination looks before posting again.
    .addColumn('outcome_unknown', 'integer', (column) => column.notNull().defaultTo(0))
    .addColumn('locked_until', 'bigint')
    .addColumn('locked_by', 'text')
    .addColumn('version', postgres ? 'bigint' : 'integer', (column) => column.notNull().defaultTo(0))
    .addColumn('created_at', 'bigint', (column) => column.notNull())
    .addColumn('delivered_at', 'bigint')
    .addColumn('external_ids', 'text')
    .execute();
  await db.schema.createIndex('deliveries_fact').ifNotExists().unique().on('deliveries').columns(['call_id', 'destination', 'fact']).execute();
  await db.schema.createIndex('deliveries_order').ifNotExists().unique().on('deliveries').columns(['call_id', 'destination', 'position']).execute();
  await db.schema
    .createIndex('deliveries_due')
    .ifNotExists()
    .on('deliveries')
    .columns(['run_at'])
    .where(sql.ref('state'), '=', 'pending')
    .execute();
  await db.schema
    .createIndex('deliveries_serial')
    .ifNotExists()
    .on('deliveries')
    .columns(['serial_key', 'locked_until'])
    .where(sql.ref('state'), '=', 'pending')
    .execute();

  await db.schema
    .createTable('destination_states')
    .ifNotExists()
    .addColumn('destination', 'text', (column) => column.primaryKey())
    // blocked: wrong settings, probed now and then, resumes on a success. disabled: its receiver said 410.
    .addColumn('state', 'text', (column) => column.notNull())
    .addColumn('reason', 'text', (column) => column.notNull())
    .addColumn('since', 'bigint', (column) => column.notNull())
    .addColumn('next_probe_at', 'bigint')
    .execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('destination_states').ifExists().execute();
  await db.schema.dropTable('deliveries').ifExists().execute();
}
