import { PostgresAdapter, type Kysely, type Transaction } from 'kysely';

/** Whether a database or an open transaction is PostgreSQL: the few statements that differ ask. */
export function isPostgres(db: Kysely<any> | Transaction<any>): boolean {
  return db.getExecutor().adapter instanceof PostgresAdapter;
}
