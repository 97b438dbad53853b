import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrations } from '../../src/db/migrations/index.ts';
import { startFakeWavoipStorage, type FakeWavoipStorage } from '../support/fake-wavoip-storage.ts';
import { makeDataDir, runCli, startChildService, testEnvironment } from '../support/service-harness.ts';
import { ensureDatabase, openTestDatabase } from '../support/test-database.ts';

/** Every migration of this release, in order. */
const ALL_MIGRATIONS = Object.keys(migrations);

let storage: FakeWavoipStorage;
beforeAll(async () => {
  storage = await startFakeWavoipStorage();
});
afterAll(async () => {
  await storage?.close();
});

describe('wavoip-recordings migrate, and MIGRATE_ON_START=false', () => {
  it('migrates a fresh database once, then finds it up to date; serve then starts without migrating', async () => {
    const env = testEnvironment(storage.origin, await makeDataDir(), { MIGRATE_ON_START: 'false' });
    await ensureDatabase(env);

    const first = await runCli(env, 'migrate');
    expect(first).toMatchObject({ code: 0, stderr: '' });
    expect(first.stdout.endsWith(`: applied ${ALL_MIGRATIONS.join(', ')}\n`)).toBe(true);
    expect((await runCli(env, 'migrate')).stdout).toMatch(/: already up to date\n$/);

    const database = await openTestDatabase(env);
    try {
      expect((await database.all<{ name: string }>('select name from kysely_migration order by name')).map((row) => row.name)).toEqual(ALL_MIGRATIONS);
    } finally {
      await database.close();
    }
    const service = await startChildService(env);
    try {
      expect(service.logs().some((line) => line.msg === 'Database migrated')).toBe(false);
      expect((await service.postWebhook({ type: 'CALL', whatsapp_call_id: 'MIGRATED', status: 'ACTIVE' })).status).toBe(200);
    } finally {
      await service.kill('SIGTERM');
    }
  });

  it('with MIGRATE_ON_START=false, serve refuses an unmigrated database and says what to run', async () => {
    const env = testEnvironment(storage.origin, await makeDataDir(), { MIGRATE_ON_START: 'false' });
    await ensureDatabase(env);
    const refused = await runCli(env, 'serve');
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(`The database schema is not up to date (pending: ${ALL_MIGRATIONS.join(', ')})`);
    expect(refused.stderr).toContain('run `wavoip-recordings migrate` first');
  });

  it('an older release starts on a database a newer release migrated (a rolling update), saying so', async () => {
    const env = testEnvironment(storage.origin, await makeDataDir());
    await ensureDatabase(env);
    expect((await runCli(env, 'migrate')).code).toBe(0);
    const database = await openTestDatabase(env);
    try {
      await database.run('insert into kysely_migration (name, timestamp) values (?, ?)', ['999-next-release', new Date().toISOString()]);
    } finally {
      await database.close();
    }
    const service = await startChildService(env);
    try {
      expect(service.logs().some((line) => line.msg === 'A newer release has migrated the database (999-next-release); running on it as it is')).toBe(true);
      expect((await service.postWebhook({ type: 'CALL', whatsapp_call_id: 'ROLLING', status: 'ACTIVE' })).status).toBe(200);
    } finally {
      await service.kill('SIGTERM');
    }
  });

  it('exits non-zero, saying why, when the database cannot be reached', async () => {
    const env = testEnvironment(storage.origin, await makeDataDir(), { DATABASE_URL: 'postgres://nobody:s3cret-pass@127.0.0.1:1/nowhere' });
    const failed = await runCli(env, 'migrate');
    expect(failed.code).toBe(1);
    expect(failed.stderr).toMatch(/^wavoip-recordings: Could not migrate the database: connect ECONNREFUSED 127\.0\.0\.1:1\n$/);
    expect(failed.stderr).not.toContain('s3cret-pass');
  });
});
