import pg from 'pg';
import { defineConfig } from 'vitest/config';
import { BaseSequencer, type TestSpecification } from 'vitest/node';

const shared = {
  testTimeout: 30_000,
  hookTimeout: 30_000,
};
/**
 * Files that take minutes (an offline production install builds better-sqlite3 from source) go
 * first: started last, on a fresh clone with no timings cached, one of them would run alone at the
 * end while the other worker idles.
 */
const LONGEST_FILES = ['test/deploy/production-install.test.ts', 'test/integration/cli.test.ts', 'test/integration/fleet.test.ts', 'test/integration/restart.test.ts'];

class LongestFirst extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const sorted = await super.sort(files);
    const rank = (file: TestSpecification) => {
      const index = LONGEST_FILES.findIndex((name) => file.moduleId.endsWith(name));
      return index === -1 ? LONGEST_FILES.length : index;
    };
    return sorted.map((file, position) => ({ file, position })).sort((a, b) => rank(a.file) - rank(b.file) || a.position - b.position).map(({ file }) => file);
  }
}

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
      sequence: { sequencer: LongestFirst },
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
