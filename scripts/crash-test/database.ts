/**
 * The crash test's database: SQLite in the run's DATA_DIR (the default), or a fresh PostgreSQL
 * database created for the run and dropped at its end. The verdict reads it through `Queries`,
 * the same SQL on both.
 *
 * Written here rather than taken from test/support/test-database.ts: that helper is bound to the
 * test run (its admin connection is TEST_POSTGRES_URL's server, its names come from vitest's
 * inject), while this script must create and drop the database on whichever server its
 * DATABASE_URL names, and never drop one it did not create.
 */
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';

/** Reads for the verdict; counts (bigint on PostgreSQL) come back as numbers. */
export interface Queries {
  all<T = Record<string, unknown>>(query: string): Promise<T[]>;
  count(query: string): Promise<number>;
  close(): Promise<void>;
}

export interface RunDatabase {
  dialect: 'sqlite' | 'postgres';
  /** For the report: SQLite, or the PostgreSQL URL without its password. */
  label: string;
  /** What the service needs to use it: DATABASE_URL, or nothing (SQLite lives in DATA_DIR). */
  env: Record<string, string>;
  /** The server's maintenance database (PostgreSQL), where the run's database is created. */
  adminUrl: string | null;
  /** Creates the database (PostgreSQL); it must not exist yet. */
  create(): Promise<void>;
  open(dataDir: string): Promise<Queries>;
  /** Drops what `create` made; safe to call more than once, and when `create` never ran. */
  drop(): Promise<void>;
}

const POSTGRES_URL = /^postgres(?:ql)?:\/\//;
/** A URL naming one of these is a server's admin URL: the run then names its database itself. */
const ADMIN_DATABASES = new Set(['', 'postgres']);

/**
 * The database of a run: `url` unset means SQLite in the run's DATA_DIR. A PostgreSQL URL
 * naming the `postgres` database (or none) is an admin URL, and the run creates
 * `wavoip_crash_<random>` on that server; one naming another database makes the run create
 * that one, which must not exist yet.
 */
export function runDatabase(url: string | undefined): RunDatabase {
  if (url === undefined) {
    return {
      dialect: 'sqlite',
      label: 'SQLite (DATA_DIR/wavoip-recordings.sqlite)',
      env: {},
      adminUrl: null,
      create: async () => {},
      open: (dataDir) => openSqlite(path.join(dataDir, 'wavoip-recordings.sqlite')),
      drop: async () => {},
    };
  }
  if (!POSTGRES_URL.test(url) || !URL.canParse(url)) {
    throw new UsageError(
      `DATABASE_URL must be a postgres:// URL (got "${redact(url)}"); leave it unset to run on SQLite in a fresh DATA_DIR`,
    );
  }
  const given = new URL(url);
  const givenName = decodeURIComponent(given.pathname.slice(1));
  const name = ADMIN_DATABASES.has(givenName) ? `wavoip_crash_${randomBytes(4).toString('hex')}` : givenName;
  const runUrl = withDatabase(given, name);
  // The maintenance database of the same server, same credentials: where CREATE and DROP run.
  const adminUrl = withDatabase(given, 'postgres');
  let created = false;
  return {
    dialect: 'postgres',
    label: `PostgreSQL ${redact(runUrl)}`,
    env: { DATABASE_URL: runUrl },
    adminUrl,
    create: () =>
      withClient(adminUrl, async (admin) => {
        const { rowCount } = await admin.query('select 1 from pg_database where datname = $1', [name]);
        if (rowCount !== 0) {
          throw new UsageError(
            `database "${name}" already exists on ${redact(adminUrl)}; the crash test creates a fresh database and drops it at the end, ` +
              'so name one that does not exist, or give the server\'s admin URL (database "postgres") and it will name one',
          );
        }
        await admin.query(`create database ${pg.escapeIdentifier(name)}`);
        created = true;
      }),
    open: () => openPostgres(runUrl),
    drop: async () => {
      if (!created) return;
      // FORCE: a service SIGKILLed by the run may have left connections the server has not reaped yet.
      await withClient(adminUrl, (admin) => admin.query(`drop database if exists ${pg.escapeIdentifier(name)} with (force)`));
      created = false;
    },
  };
}

/** A wrong DATABASE_URL: reported without a stack trace, exit code 2. */
export class UsageError extends Error {}

function withDatabase(url: URL, database: string): string {
  const copy = new URL(url);
  copy.pathname = `/${encodeURIComponent(database)}`;
  return copy.toString();
}

function redact(url: string): string {
  if (!URL.canParse(url)) return url.replace(/:[^:@/]*@/, ':***@');
  const parsed = new URL(url);
  if (parsed.password) parsed.password = '***';
  return parsed.toString();
}

async function withClient<T>(url: string, run: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 10_000 });
  await client.connect();
  try {
    return await run(client);
  } finally {
    await client.end();
  }
}

async function openPostgres(url: string): Promise<Queries> {
  const client = new pg.Client({
    connectionString: url,
    connectionTimeoutMillis: 10_000,
    // bigint (oid 20) as a number, as better-sqlite3 returns integers: every value the verdict
    // compares (times, sizes, counts, 47-bit job versions) is below 2^53.
    types: { getTypeParser: (oid, format) => (oid === 20 ? Number : pg.types.getTypeParser(oid, format)) },
  });
  await client.connect();
  const all = async <T>(query: string) => (await client.query(query)).rows as T[];
  return {
    all,
    count: async (query) => Number(Object.values((await all<Record<string, unknown>>(query))[0] ?? {})[0]),
    close: () => client.end(),
  };
}

async function openSqlite(file: string): Promise<Queries> {
  const db = new Database(file, { fileMustExist: true });
  // A reader can meet the lock of a restarted service recovering the WAL; wait instead of failing.
  db.pragma('busy_timeout = 5000');
  return {
    all: async <T>(query: string) => db.prepare(query).all() as T[],
    count: async (query) => Number(db.prepare(query).pluck().get()),
    close: async () => void db.close(),
  };
}
