import { sql, type Kysely } from 'kysely';
import { isPostgres } from '../dialect.ts';

// Frozen, like every migration. Devices get their normalised status, when it was last reported
// and when it last changed, and a tenant; events and calls get the tenant of the webhook token
// that brought them; webhook tokens for device groups get a table. SQLite cannot add a column
// `if not exists` and runs this outside a transaction, so each column is looked for first;
// PostgreSQL runs it in a transaction.
export async function up(db: Kysely<any>): Promise<void> {
  const postgres = isPostgres(db);
  const addColumn = async (table: string, column: string, type: 'text' | 'bigint') => {
    const present =
      !postgres && (await sql`select 1 from pragma_table_info(${table}) where name = ${column}`.execute(db)).rows.length > 0;
    if (!present) await db.schema.alterTable(table).addColumn(column, type).execute();
  };
  await addColumn('events', 'tenant', 'text');
  await addColumn('calls', 'tenant', 'text');
  await addColumn('devices', 'tenant', 'text');
  await addColumn('devices', 'normalized_status', 'text');
  await addColumn('devices', 'status_at', 'bigint');
  await addColumn('devices', 'status_changed_at', 'bigint');

  // The status devices already have, normalised as src/devices/device-status.ts did when this
  // was written; when it last changed is not known.
  await sql`update devices set
      status_at = last_seen_at,
      normalized_status = case lower(trim(coalesce(status, '')))
        when 'open' then 'connected' when 'connected' then 'connected'
        when 'close' then 'disconnected' when 'closed' then 'disconnected' when 'disconnected' then 'disconnected'
        when 'connecting' then 'connecting' when 'building' then 'building' when 'restarting' then 'restarting'
        when 'error' then 'error' when 'waiting_payment' then 'payment_required' when 'hibernating' then 'hibernating'
        else 'unknown' end
    where normalized_status is null`.execute(db);

  // The list filtered by tenant, newest first. (A device's calls of the last 24 hours use 004's calls_device_newest.)
  await db.schema
    .createIndex('calls_tenant_newest')
    .ifNotExists()
    .on('calls')
    .columns(['tenant', 'first_seen_at desc', 'call_id desc'])
    .execute();
  // Silent devices (and retention's pruning) by last webhook; the device list by tenant.
  await db.schema.createIndex('devices_last_seen').ifNotExists().on('devices').column('last_seen_at').execute();
  await db.schema.createIndex('devices_tenant').ifNotExists().on('devices').columns(['tenant', 'device_id']).execute();

  await db.schema
    .createTable('webhook_tokens')
    .ifNotExists()
    .addColumn('id', 'text', (column) => column.primaryKey())
    .addColumn('label', 'text', (column) => column.notNull())
    .addColumn('token_sha256', 'text', (column) => column.notNull().unique())
    .addColumn('created_at', 'bigint', (column) => column.notNull())
    .addColumn('revoked_at', 'bigint')
    .execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('webhook_tokens').ifExists().execute();
  for (const index of ['devices_tenant', 'devices_last_seen', 'calls_tenant_newest']) {
    await db.schema.dropIndex(index).ifExists().execute();
  }
  for (const [table, column] of [
    ['devices', 'status_changed_at'], ['devices', 'status_at'], ['devices', 'normalized_status'], ['devices', 'tenant'],
    ['calls', 'tenant'], ['events', 'tenant'],
  ] as const) {
    await db.schema.alterTable(table).dropColumn(column).execute();
  }
}
