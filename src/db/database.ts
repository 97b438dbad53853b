import fs from 'node:fs';
import fsPromises, { type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import SQLite from 'better-sqlite3';
import { Kysely, Migrator, PostgresDialect, SqliteDialect, sql, type SqliteDatabase, type Transaction } from 'kysely';
import pg from 'pg';
import type { DatabaseConfig } from '../config/config.ts';
import { AppError, coerceError } from '../errors.ts';
import { migrations } from './migrations/index.ts';
import type { Database } from './schema.ts';

export type Db = Kysely<Database>;
/** Repository functions take either the database or an open transaction. */
export type DbOrTrx = Kysely<Database> | Transaction<Database>;

export function createDb(database: DatabaseConfig): Db {
  if (database.dialect === 'postgres') return new Kysely<Database>({ dialect: new PostgresDialect({ pool: createPool(database) }) });
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

const INT8_OID = 20;
const IDLE_IN_TRANSACTION_TIMEOUT_MS = 60_000;
/**
 * A connection whose server vanished without closing it (a partition, a host gone) is found by
 * TCP keepalive probes; the system waits two hours before the first unless told otherwise.
 */
export const TCP_KEEPALIVE_DELAY_MS = 10_000;

/**
 * Times are milliseconds since the epoch in bigint columns, and counts are bigint too: read
 * them as numbers (exact up to 2^53, some 285,000 years of milliseconds) rather than strings.
 */
function createPool(database: Extract<DatabaseConfig, { dialect: 'postgres' }>): pg.Pool {
  const pool = new pg.Pool({
    connectionString: database.url,
    max: database.poolSize,
    connectionTimeoutMillis: 10_000,
    keepAlive: true,
    keepAliveInitialDelayMillis: TCP_KEEPALIVE_DELAY_MS,
    // A replica frozen or cut off inside a transaction would hold its locks (the fleet-wide
    // event-processing lock among them) until TCP gave up, hours later: the server ends such a
    // session after a minute instead.
    options: `-c idle_in_transaction_session_timeout=${IDLE_IN_TRANSACTION_TIMEOUT_MS}`,
    types: { getTypeParser: (oid: number, format?: string) => (oid === INT8_OID ? Number : pg.types.getTypeParser(oid, format as 'text')) },
  });
  // A connection lost emits 'error' on its client, and with no listener that crashes the
  // process. An idle client's error comes to the pool; a checked-out one (between the queries of
  // a transaction, say) has no pool listener, hence one of its own. Its queries fail by
  // themselves, the pool drops it when it comes back, and the next query gets a fresh connection.
  pool.on('error', () => {});
  pool.on('connect', (client) => client.on('error', () => {}));
  return pool;
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

const migratorFor = (db: Db) => new Migrator({ db, provider: { getMigrations: async () => migrations } });

/**
 * Applies every pending migration; throws (never exits 0) when one fails. Replicas starting
 * together against a fresh PostgreSQL database take turns: Kysely holds an advisory lock.
 */
export async function migrateToLatest(db: Db): Promise<string[]> {
  // During a rolling update an older replica may restart on a schema a newer one migrated.
  // Migrations only add, so it runs on it as is (Kysely's migrator would refuse the database).
  const newer = await migrationsUnknownHere(db).catch((caught: unknown) => {
    throw new AppError(`Could not migrate the database: ${coerceError(caught).message}`, { code: 'MIGRATION_FAILED', cause: caught });
  });
  if (newer.length > 0) {
    await assertMigrated(db);
    return [];
  }
  const { error, results } = await migratorFor(db).migrateToLatest();
  if (error) {
    const failed = results?.find((result) => result.status === 'Error')?.migrationName;
    const what = failed === undefined ? 'Could not migrate the database' : `Database migration ${failed} failed`;
    throw new AppError(`${what}: ${coerceError(error).message}`, {
      code: 'MIGRATION_FAILED',
      cause: error,
    });
  }
  return (results ?? []).filter((result) => result.status === 'Success').map((result) => result.migrationName);
}

/** Migrations the database has run that this release does not have: a newer release ran them. */
export async function migrationsUnknownHere(db: Db): Promise<string[]> {
  const tables = await db.introspection.getTables({ withInternalKyselyTables: true });
  if (!tables.some((table) => table.name === 'kysely_migration')) return [];
  const rows = await (db as unknown as Kysely<{ kysely_migration: { name: string } }>).selectFrom('kysely_migration').select('name').execute();
  return rows.map((row) => row.name).filter((name) => !(name in migrations));
}

/** With MIGRATE_ON_START=false: refuses to run against a schema older than this code. */
export async function assertMigrated(db: Db): Promise<void> {
  const pending = (await migratorFor(db).getMigrations()).filter((migration) => migration.executedAt === undefined);
  if (pending.length === 0) return;
  throw new AppError(
    `The database schema is not up to date (pending: ${pending.map((migration) => migration.name).join(', ')}); ` +
      'run `wavoip-recordings migrate` first, or set MIGRATE_ON_START=true',
    { code: 'MIGRATION_PENDING' },
  );
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
export function createWalSync(database: DatabaseConfig) {
  // PostgreSQL syncs its own log at each commit (synchronous_commit), before the commit returns.
  if (database.dialect === 'postgres') return { assertHealthy() {}, async sync() {}, async close() {} };
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

const CONNECTION_ERROR_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN']);
/**
 * Errors a row itself causes, which would fail the same way on every retry: SQLite constraint,
 * type and size errors, PostgreSQL classes 22 (data) and 23 (integrity). Everything else the
 * database says (busy, full, unreachable, a lost grant, a missing table) is the database's or
 * the schema's trouble: the events wait for it to be fixed rather than being dropped. A
 * trigger refusing a write (our schema has none) is an operator holding writes back on purpose.
 */
const SQLITE_ROW_FAULT = /^SQLITE_(CONSTRAINT(?!_TRIGGER)|MISMATCH|TOOBIG|RANGE)/;
const POSTGRES_ROW_FAULT = /^(22|23)/;

/**
 * An error from the database itself, as opposed to one in our handling of a row: what was being
 * written is tried again later, never marked as bad.
 */
export function isDatabaseError(error: unknown): boolean {
  if (error instanceof SQLite.SqliteError) return !SQLITE_ROW_FAULT.test(error.code);
  if (error instanceof pg.DatabaseError) return !POSTGRES_ROW_FAULT.test(error.code ?? '');
  return isConnectionLost(error);
}

/**
 * Busy, locked, full, out of memory, failing disk; PostgreSQL's connection (08), resource (53),
 * operator intervention (57: shut down, starting up, statement timeout) and system (58) classes,
 * a transaction that lost a race (40001, 40P01) or a lock (55P03), a server still read-only
 * just after a fail-over (25006), and a session ended for idling in a transaction (25P03).
 */
const SQLITE_UNAVAILABLE = /^SQLITE_(BUSY|LOCKED|FULL|IOERR|CANTOPEN|READONLY|NOMEM|PROTOCOL)/;
const POSTGRES_UNAVAILABLE = /^(08|53|57|58|40001$|40P01$|55P03$|25006$|25P03$)/;

/**
 * The database out of reach or overwhelmed for now: a request may succeed if sent again, so it
 * is answered 503. Unlike isDatabaseError, a fault in a query or the schema is not one: trying
 * again would not help, and it is answered 500 like any other defect.
 */
export function isDatabaseUnavailable(error: unknown): boolean {
  if (error instanceof SQLite.SqliteError) return SQLITE_UNAVAILABLE.test(error.code);
  if (error instanceof pg.DatabaseError) return POSTGRES_UNAVAILABLE.test(error.code ?? '');
  return isConnectionLost(error);
}

function isConnectionLost(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && CONNECTION_ERROR_CODES.has(code)) return true;
  // pg's own words for a connection lost or never made, which carry no code.
  return error instanceof Error && /^(Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|Query read timeout)/.test(error.message);
}

export async function checkDb(db: Db): Promise<void> {
  await sql`select 1`.execute(db);
}
