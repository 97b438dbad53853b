import pg from 'pg';
import { defineConfig } from 'vitest/config';

const shared = {
  testTimeout: 30_000,
  hookTimeout: 30_000,
};
const POSTGRES_URL = process.env.TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

async function postgresReachable(): Promise<boolean> {
  const client = new pg.Client({ connectionString: POSTGRES_URL, connectionTimeoutMillis: 3_000 });
  try {
    await client.connect();
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => {});
  }
}

/**
 * Two projects: everything on SQLite (the embedded default), and the suites that go through a
 * database again on PostgreSQL (TEST_POSTGRES_URL, default the local server). Without a
 * PostgreSQL to reach, only the first runs, with a warning; CI sets TEST_REQUIRE_POSTGRES=1 so
 * that a missing server fails the run instead.
 */
export default defineConfig(async () => {
  const withPostgres = await postgresReachable();
  if (!withPostgres) {
    if (process.env.TEST_REQUIRE_POSTGRES === '1') throw new Error(`PostgreSQL is not reachable at ${POSTGRES_URL}`);
    console.warn(`\n⚠ PostgreSQL is not reachable at ${POSTGRES_URL}: the postgres test project is skipped. Set TEST_POSTGRES_URL to run it.\n`);
  }
  return {
    test: {
      // Integration suites start real servers and child processes; two cores are all CI has.
      maxWorkers: 2,
      projects: [
        { test: { ...shared, name: 'sqlite', include: ['test/**/*.test.ts'] } },
        ...(withPostgres
          ? [
              {
                test: {
                  ...shared,
                  name: 'postgres',
                  include: ['test/integration/**/*.test.ts', 'test/security/**/*.test.ts', 'test/db/**/*.test.ts'],
                  env: { TEST_DATABASE: 'postgres', TEST_POSTGRES_URL: POSTGRES_URL },
                  globalSetup: ['test/support/postgres-setup.ts'],
                },
              },
            ]
          : []),
      ],
    },
  };
});
