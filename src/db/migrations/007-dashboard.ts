import { sql, type Kysely } from 'kysely';
import { isPostgres } from '../dialect.ts';

// Frozen, like every migration. The dashboard's sign-ins, kept in the database so that signing
// out revokes a session everywhere and every replica accepts its cookie: only a hash of each
// cookie is kept. And, on PostgreSQL, call ids in byte order for the list's search by id prefix
// (a prefix range on the primary key holds only under the C collation; SQLite's is bytewise
// already). Every statement is `if not exists`: SQLite runs this outside a transaction.
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable('dashboard_sessions')
    .ifNotExists()
    // sha256 hex of the cookie's value.
    .addColumn('id_hash', 'text', (column) => column.primaryKey())
    .addColumn('csrf_token', 'text', (column) => column.notNull())
    .addColumn('created_at', 'bigint', (column) => column.notNull())
    .addColumn('expires_at', 'bigint', (column) => column.notNull())
    .execute();
  await db.schema.createIndex('dashboard_sessions_expiry').ifNotExists().on('dashboard_sessions').column('expires_at').execute();
  if (isPostgres(db)) {
    await db.schema.createIndex('calls_call_id_bytes').ifNotExists().on('calls').expression(sql`call_id collate "C"`).execute();
  }
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropIndex('calls_call_id_bytes').ifExists().execute();
  await db.schema.dropTable('dashboard_sessions').ifExists().execute();
}
