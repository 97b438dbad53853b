import { sql, type Kysely } from 'kysely';

// Frozen, like every migration. A recording known to be ready is claimed before polls, however
// long they have been due: 0 for a download, 1 for a poll. SQLite cannot add a column
// `if not exists` and runs this outside a transaction, so a half-done run is completed by
// looking first.
export async function up(db: Kysely<any>): Promise<void> {
  const tables = await db.introspection.getTables();
  const fetchJobs = tables.find((table) => table.name === 'fetch_jobs');
  if (!fetchJobs?.columns.some((column) => column.name === 'priority')) {
    await db.schema
      .alterTable('fetch_jobs')
      .addColumn('priority', 'integer', (column) => column.notNull().defaultTo(1))
      .execute();
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
