import { Migrator, sql } from 'kysely';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/config.ts';
import { createDb, migrateToLatest, type Db } from '../../src/db/database.ts';
import { claimDueFetchJobs } from '../../src/db/fetch-jobs-repository.ts';
import * as deliveriesMigration from '../../src/db/migrations/006-deliveries.ts';
import { migrations } from '../../src/db/migrations/index.ts';
import { makeDataDir } from '../support/service-harness.ts';
import { databaseEnvironment, ensureDatabase, testDialect } from '../support/test-database.ts';

let db: Db;

beforeEach(async () => {
  const env = { DATA_DIR: await makeDataDir(), ...databaseEnvironment() };
  await ensureDatabase(env);
  db = createDb(loadConfig(env).database);
});
afterEach(async () => {
  await db.destroy();
});

async function migrateTo(name: string): Promise<void> {
  const { error } = await new Migrator({ db, provider: { getMigrations: async () => migrations } }).migrateTo(name);
  if (error) throw error;
}

async function addWaitingCall(callId: string, recordStatus: string | null, runAt: number): Promise<void> {
  await sql`insert into calls (call_id, record_status, first_seen_at, last_seen_at, attachment_state)
    values (${callId}, ${recordStatus}, 0, 0, 'pending')`.execute(db);
  await sql`insert into fetch_jobs (call_id, run_at, deadline_at, attempts, version)
    values (${callId}, ${runAt}, 99000, 0, 1)`.execute(db);
}

describe(`upgrading a ${testDialect === 'sqlite' ? 'SQLite' : 'PostgreSQL'} database with work waiting`, () => {
  it('003 makes the jobs of calls already READY downloads, claimed before the polls', async () => {
    await migrateTo('002-recording-retention');
    await addWaitingCall('polled', null, 1_000);
    await addWaitingCall('recording', 'RECORDING', 2_000);
    await addWaitingCall('ready', 'READY', 3_000);
    expect((await migrateToLatest(db))[0]).toBe('003-fetch-priority');

    const claimed = await claimDueFetchJobs(db, { now: 5_000, limit: 3, workerId: 'a', leaseMs: 60_000, running: [] });
    expect(claimed.map((job) => job.callId)).toEqual(['ready', 'polled', 'recording']);
  });

  // SQLite runs migrations outside a transaction: one cut short after its first statement is run
  // again from the start. (PostgreSQL runs each in a transaction.)
  it.skipIf(testDialect !== 'sqlite')('003 completes when run again after it was cut short', async () => {
    await migrateTo('002-recording-retention');
    await addWaitingCall('ready', 'READY', 3_000);
    await sql`alter table fetch_jobs add column priority integer not null default 1`.execute(db);
    expect((await migrateToLatest(db))[0]).toBe('003-fetch-priority');
    const rows = await sql<{ call_id: string; priority: number }>`select call_id, priority from fetch_jobs`.execute(db);
    expect(rows.rows).toEqual([{ call_id: 'ready', priority: 0 }]);
  });

  it('005 normalises the status devices already have, and leaves when it changed unknown', async () => {
    await migrateTo('003-fetch-priority');
    for (const [id, status] of [['a', 'open'], ['b', 'CLOSE'], ['c', 'WAITING_PAYMENT'], ['d', null], ['e', 'no_status']] as const) {
      await sql`insert into devices (device_id, phone, status, last_seen_at) values (${id}, '5511911112222', ${status}, 1000)`.execute(db);
    }
    await migrateTo('005-devices-and-tenants');
    const rows = await sql<{ device_id: string; normalized_status: string; status_at: number; status_changed_at: number | null; tenant: string | null }>`
      select device_id, normalized_status, status_at, status_changed_at, tenant from devices order by device_id`.execute(db);
    expect(rows.rows.map((row) => [row.device_id, row.normalized_status, Number(row.status_at), row.status_changed_at, row.tenant])).toEqual([
      ['a', 'connected', 1000, null, null],
      ['b', 'disconnected', 1000, null, null],
      ['c', 'payment_required', 1000, null, null],
      ['d', 'unknown', 1000, null, null],
      ['e', 'unknown', 1000, null, null],
    ]);
  });

  it.skipIf(testDialect !== 'sqlite')('005 completes when run again after it was cut short', async () => {
    await migrateTo('003-fetch-priority');
    await sql`alter table events add column tenant text`.execute(db);
    await sql`alter table devices add column status_at bigint`.execute(db);
    await migrateTo('005-devices-and-tenants');
    const columns = await sql<{ name: string }>`select name from pragma_table_info('calls') where name = 'tenant'`.execute(db);
    expect(columns.rows).toHaveLength(1);
  });

  it.skipIf(testDialect !== 'sqlite')('006 completes when run again after it was cut short', async () => {
    await migrateToLatest(db);
    // Each of its statements runs again over what it already made: a run cut short anywhere completes.
    await deliveriesMigration.up(db);
    await addWaitingCall('ended', null, 1_000);
    await sql`insert into deliveries (id, call_id, destination, kind, fact, position, state, run_at, deadline_at, created_at)
      values ('d1', 'ended', 'webhook:x', 'call', 'call', 1, 'pending', 1, 2, 1)`.execute(db);
    await expect(sql`insert into deliveries (id, call_id, destination, kind, fact, position, state, run_at, deadline_at, created_at)
      values ('d2', 'ended', 'webhook:x', 'call', 'call', 2, 'pending', 1, 2, 1)`.execute(db)).rejects.toThrow(/UNIQUE/);
  });
});
