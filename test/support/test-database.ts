import path from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import { inject } from 'vitest';

/**
 * Which database the suite runs against: SQLite files by default; the `postgres` project of
 * vitest.config.ts sets TEST_DATABASE=postgres and runs the same tests on the PostgreSQL server
 * at TEST_POSTGRES_URL (default: the local one), one fresh database per service started.
 */
export const testDialect: 'sqlite' | 'postgres' = process.env.TEST_DATABASE === 'postgres' ? 'postgres' : 'sqlite';
export const POSTGRES_ADMIN_URL = process.env.TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

declare module 'vitest' {
  export interface ProvidedContext {
    /** Set by test/support/postgres-setup.ts: the prefix of every database this run creates. */
    postgresDatabasePrefix: string;
  }
}

let created = 0;

/** The DATABASE_URL a new service should use (none for SQLite: its file lives in DATA_DIR). */
export function databaseEnvironment(): Record<string, string> {
  if (testDialect === 'sqlite') return {};
  created += 1;
  const name = `${inject('postgresDatabasePrefix')}${process.pid}_${created}`;
  return { DATABASE_URL: withDatabase(POSTGRES_ADMIN_URL, name) };
}

export function withDatabase(url: string, database: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${database}`;
  return parsed.toString();
}

/** Creates the database DATABASE_URL names, unless it exists (a restarted service reuses it). */
export async function ensureDatabase(env: Record<string, string>): Promise<void> {
  const url = env.DATABASE_URL;
  if (url === undefined || !url.startsWith('postgres')) return;
  const name = new URL(url).pathname.slice(1);
  await withAdmin(async (admin) => {
    const { rowCount } = await admin.query('select 1 from pg_database where datname = $1', [name]);
    if (rowCount === 0) await admin.query(`create database "${name}"`);
  });
}

export async function withAdmin<T>(run: (admin: pg.Client) => Promise<T>): Promise<T> {
  const admin = new pg.Client({ connectionString: POSTGRES_ADMIN_URL });
  await admin.connect();
  try {
    return await run(admin);
  } finally {
    await admin.end();
  }
}

/**
 * Direct SQL on a service's database, for tests that look past the API. Written once for both
 * dialects: `?` placeholders, and counts come back as numbers.
 */
export interface TestDatabase {
  all<T = Record<string, unknown>>(query: string, params?: unknown[]): Promise<T[]>;
  get<T = Record<string, unknown>>(query: string, params?: unknown[]): Promise<T | undefined>;
  run(query: string, params?: unknown[]): Promise<void>;
  close(): Promise<void>;
}

export async function openTestDatabase(env: Record<string, string>): Promise<TestDatabase> {
  const url = env.DATABASE_URL;
  if (url?.startsWith('postgres')) {
    await ensureDatabase(env);
    const client = new pg.Client({ connectionString: url, types: { getTypeParser: (oid, format) => (oid === 20 ? Number : pg.types.getTypeParser(oid, format)) } });
    await client.connect();
    const toPostgres = (query: string) => {
      let index = 0;
      return query.replace(/\?/g, () => `$${++index}`);
    };
    const all = async <T>(query: string, params: unknown[] = []) => (await client.query(toPostgres(query), params)).rows as T[];
    return {
      all,
      get: async <T>(query: string, params?: unknown[]) => (await all<T>(query, params))[0],
      run: async (query, params = []) => void (await client.query(toPostgres(query), params)),
      close: () => client.end(),
    };
  }
  const filename = url?.startsWith('sqlite:') ? url.slice('sqlite:'.length) : path.join(env.DATA_DIR ?? './data', 'wavoip-recordings.sqlite');
  const database = new Database(filename, { fileMustExist: true });
  database.pragma('busy_timeout = 5000');
  return {
    all: async <T>(query: string, params: unknown[] = []) => database.prepare(query).all(...params) as T[],
    get: async <T>(query: string, params: unknown[] = []) => database.prepare(query).get(...params) as T | undefined,
    run: async (query, params = []) => void database.prepare(query).run(...params),
    close: async () => void database.close(),
  };
}

/**
 * Waits until the service has applied every event it stored (each has its processed_at). A
 * webhook is answered once stored, and applied just after. On SQLite the processing takes the
 * one connection first, so in practice the next API request already sees its effect; on
 * PostgreSQL that request runs on another connection and can see the call as it was before.
 * Tests that read what an event did, right after posting it, wait here first.
 */
export async function waitForEventsApplied(env: Record<string, string>, timeoutMs = 20_000): Promise<void> {
  const database = await openTestDatabase(env);
  try {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const row = await database.get<{ n: number }>('select count(*) as n from events where processed_at is null');
      if (row?.n === 0) return;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${row?.n} stored events to be applied`);
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  } finally {
    await database.close();
  }
}
