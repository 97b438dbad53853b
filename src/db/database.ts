import fs from 'node:fs';
import path from 'node:path';
import SQLite from 'better-sqlite3';
import { Kysely, Migrator, SqliteDialect, sql, type Transaction } from 'kysely';
import type { Config } from '../config/config.ts';
import { AppError } from '../errors.ts';
import { migrations } from './migrations/index.ts';
import type { Database } from './schema.ts';

export type Db = Kysely<Database>;
/** Repository functions take either the database or an open transaction. */
export type DbOrTrx = Kysely<Database> | Transaction<Database>;

export function createDb(database: Config['database']): Db {
  fs.mkdirSync(path.dirname(database.filename), { recursive: true });
  const connection = new SQLite(database.filename);
  connection.pragma('journal_mode = WAL');
  // FULL: a webhook is acknowledged only once its row would survive a power cut, not just a crash.
  connection.pragma('synchronous = FULL');
  connection.pragma('foreign_keys = ON');
  connection.pragma('busy_timeout = 5000');
  return new Kysely<Database>({ dialect: new SqliteDialect({ database: connection }) });
}

/** Applies every pending migration; throws (never exits 0) when one fails. */
export async function migrateToLatest(db: Db): Promise<string[]> {
  const migrator = new Migrator({ db, provider: { getMigrations: async () => migrations } });
  const { error, results } = await migrator.migrateToLatest();
  if (error) {
    const failed = results?.find((result) => result.status === 'Error')?.migrationName ?? 'unknown';
    throw new AppError(`Database migration ${failed} failed: ${(error as Error).message ?? String(error)}`, {
      code: 'MIGRATION_FAILED',
      cause: error,
    });
  }
  return (results ?? []).filter((result) => result.status === 'Success').map((result) => result.migrationName);
}

export async function checkDb(db: Db): Promise<void> {
  await sql`select 1`.execute(db);
}
