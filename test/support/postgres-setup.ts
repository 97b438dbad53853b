import { randomBytes } from 'node:crypto';
import type { TestProject } from 'vitest/node';
import { withAdmin } from './test-database.ts';

/**
 * Global setup of the `postgres` project: every database the run creates starts with a prefix
 * of its own, and all of them are dropped when the run ends (FORCE: a child service killed
 * mid-test may have left connections open).
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const prefix = `wavoip_test_${randomBytes(4).toString('hex')}_`;
  await withAdmin(async (admin) => admin.query('select 1'));
  project.provide('postgresDatabasePrefix', prefix);
  return async () => {
    await withAdmin(async (admin) => {
      const { rows } = await admin.query<{ datname: string }>('select datname from pg_database where datname like $1', [`${prefix}%`]);
      for (const { datname } of rows) await admin.query(`drop database if exists "${datname}" with (force)`);
    });
  };
}
