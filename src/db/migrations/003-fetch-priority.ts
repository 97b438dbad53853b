import { sql, type Kysely } from 'kysely';
import { isPostgres } from '../dialect.ts';

// Frozen, like every migration. A recording known to be ready is claimed before polls, however
// long they have been due: 0 for a download, 1 for a poll. SQLite cannot add a column
// `if not exists` and runs this outside a transaction, so a run cut short is completed by
// looking first; PostgreSQL runs it in a transaction.
export async function up(db: Kysely<any>): Promise<void> {
  const added =
    !isPostgres(db) && (await sql`select 1 from pragma_table_info('fetch_jobs') where name = 'priority'`.execute(db)).rows.length > 0;
  if (!added) {
    await db.schema.alterTable('fetch_jobs').addColumn('priority', 'integer', (column) => column.notNull().defaultTo(1)).execute();
  }
  await sql`update fetch_jobs set priority = 0
    where priority <> 0 and call_id in (select call_id from calls where record_status = 'READY')`.execute(db);
  await db.schema
    .createIndex('fetch_jobs_priority_run_at')
    .ifNotExists()
    .on('fetch_jobs')
    .columns(['priority', 'run_at'])
    .execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropIndex('fetch_jobs_priority_run_at').ifExists().execute();
  await db.schema.alterTable('fetch_jobs').dropColumn('priority').execute();
}
