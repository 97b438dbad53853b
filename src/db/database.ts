import fs from 'node:fs';
import fsPromises, { type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import SQLite from 'better-sqlite3';
import { Kysely, Migrator, SqliteDialect, sql, type SqliteDatabase, type Transaction } from 'kysely';
import type { Config } from '../config/config.ts';
import { AppError, coerceError } from '../errors.ts';
import { migrations } from './migrations/index.ts';
import type { Database } from './schema.ts';

export type Db = Kysely<Database>;
/** Repository functions take either the database or an open transaction. */
export type DbOrTrx = Kysely<Database> | Transaction<Database>;

export function createDb(database: Config['database']): Db {
  fs.mkdirSync(path.dirname(database.filename), { recursive: true });
  const connection = new SQLite(database.filename);
  connection.pragma('journal_mode = WAL');
  // NORMAL: commits do not fsync (checkpoints still do, on this thread, once per ~1,000 pages).
  // What must survive a power cut before it is acknowledged (a webhook) waits for
  // `createWalSync().sync()`, which fsyncs off the event loop.
  connection.pragma('synchronous = NORMAL');
  connection.pragma('foreign_keys = ON');
  connection.pragma('busy_timeout = 5000');
  return new Kysely<Database>({ dialect: new SqliteDialect({ database: withStatementCache(connection) }) });
}

const STATEMENT_CACHE_SIZE = 256;

/**
 * Kysely prepares every query anew; on the webhook path preparing cost as much as running.
 * The service runs a small set of distinct statements, so keep the most recently used ones.
 */
function withStatementCache(connection: SQLite.Database): SqliteDatabase {
  const statements = new Map<string, SQLite.Statement>();
  return {
    close: () => connection.close(),
    prepare(text: string) {
      let statement = statements.get(text);
      if (statement) {
        statements.delete(text);
      } else {
        statement = connection.prepare(text);
        if (statements.size >= STATEMENT_CACHE_SIZE) statements.delete(statements.keys().next().value as string);
      }
      statements.set(text, statement);
      return statement;
    },
  };
}

/** Applies every pending migration; throws (never exits 0) when one fails. */
export async function migrateToLatest(db: Db): Promise<string[]> {
  const migrator = new Migrator({ db, provider: { getMigrations: async () => migrations } });
  const { error, results } = await migrator.migrateToLatest();
  if (error) {
    const failed = results?.find((result) => result.status === 'Error')?.migrationName ?? 'unknown';
    throw new AppError(`Database migration ${failed} failed: ${coerceError(error).message}`, {
      code: 'MIGRATION_FAILED',
      cause: error,
    });
  }
  return (results ?? []).filter((result) => result.status === 'Success').map((result) => result.migrationName);
}

/**
 * Makes every transaction committed so far durable, without blocking the event loop: an
 * fdatasync of the WAL file on libuv's thread pool, where `synchronous = FULL` would fsync
 * inside each commit on the calling thread. Frames a checkpoint already moved into the
 * database file were synced by that checkpoint, which in WAL mode syncs the database (on the
 * event loop, once per ~1,000 pages written). Hand-written because no SQLite binding for Node
 * offers an asynchronous commit.
 *
 * After a failed sync nothing later can be trusted: Linux reports a writeback error once and
 * marks the pages clean, and a bad WAL frame makes recovery drop every frame after it. So a
 * failure is final; the caller stops acknowledging until the process restarts.
 */
export function createWalSync(database: Config['database']) {
  let wal: FileHandle | undefined;
  let failure: Error | undefined;
  return {
    /** Throws the sync failure, if there was one, so that nothing more is stored after it. */
    assertHealthy(): void {
      if (failure) throw failure;
    },
    async sync(): Promise<void> {
      if (failure) throw failure;
      try {
        wal ??= await fsPromises.open(`${database.filename}-wal`, 'r');
        await wal.datasync();
      } catch (caught) {
        // Opening can fail for a passing reason (EMFILE); only a failed sync is final.
        if (wal === undefined) throw caught;
        failure = new AppError(`The database log could not be synced to disk: ${coerceError(caught).message}; restart the service`, {
          code: 'WAL_SYNC_FAILED',
          statusCode: 503,
          cause: caught,
        });
        throw failure;
      }
    },
    async close(): Promise<void> {
      await wal?.close();
    },
  };
}

export type WalSync = ReturnType<typeof createWalSync>;

/** An error from the database itself (locked, full, I/O), as opposed to one in our handling of a row. */
export function isDatabaseError(error: unknown): boolean {
  return error instanceof SQLite.SqliteError;
}

export async function checkDb(db: Db): Promise<void> {
  await sql`select 1`.execute(db);
}
