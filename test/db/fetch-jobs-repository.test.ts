import { sql } from 'kysely';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadConfig, type DatabaseConfig } from '../../src/config/config.ts';
import { createDb, migrateToLatest, type Db } from '../../src/db/database.ts';
import { saveCall } from '../../src/db/calls-repository.ts';
import {
  claimDueFetchJobs,
  deleteFetchJob,
  findFetchJob,
  findNextFetchJobRunAt,
  releaseFetchJob,
  renewFetchJobLeases,
  rescheduleFetchJob,
  scheduleFetchJob,
  selectDueFetchJobs,
  selectNextFetchJobRunAt,
  type FetchJob,
} from '../../src/db/fetch-jobs-repository.ts';
import { applyCallEvent } from '../../src/calls/call-state.ts';
import type { FetchSchedule } from '../../src/calls/fetch-plan.ts';
import { makeDataDir } from '../support/service-harness.ts';
import { databaseEnvironment, ensureDatabase, testDialect } from '../support/test-database.ts';

/** A fresh database for each test: a SQLite file, or (postgres project) a new PostgreSQL database. */
let database: DatabaseConfig;
let db: Db;

beforeEach(async () => {
  const env = { DATA_DIR: await makeDataDir(), ...databaseEnvironment() };
  await ensureDatabase(env);
  database = loadConfig(env).database;
  db = createDb(database);
  await migrateToLatest(db);
});
afterEach(async () => {
  await db.destroy();
});

const poll = (runAt: number, deadlineAt: number): FetchSchedule => ({ action: 'poll', runAt, deadlineAt });
const download = (runAt: number, deadlineAt: number): FetchSchedule => ({ action: 'fetch-now', runAt, deadlineAt });

/** The scheduler's queries at 1,000 ms, each with the index its plan must walk. */
const schedulerQueries = () =>
  [
    [selectDueFetchJobs(db, 1_000, 0, 4), 'fetch_jobs_priority_run_at'],
    [selectDueFetchJobs(db, 1_000, 1, 4), 'fetch_jobs_priority_run_at'],
    [selectNextFetchJobRunAt(db, 1_000), 'fetch_jobs_run_at'],
  ] as const;

async function addCall(callId: string): Promise<void> {
  await saveCall(db, applyCallEvent(null, { type: 'RECORD', callId, recordStatus: 'RECORDING', recordUrl: null, deviceId: null }, 0));
}

describe(`fetch jobs in ${testDialect === 'sqlite' ? 'SQLite' : 'PostgreSQL'}`, () => {
  it('claims due jobs oldest first, each once, and leaves jobs not yet due', async () => {
    for (const [callId, runAt] of [['late', 5_000], ['first', 1_000], ['second', 2_000]] as const) {
      await addCall(callId);
      await scheduleFetchJob(db, callId, poll(runAt, 10_000));
    }
    const claimed = await claimDueFetchJobs(db, { now: 3_000, limit: 10, workerId: 'a', leaseMs: 1_000, running: [] });
    expect(claimed.map((job) => job.callId)).toEqual(['first', 'second']);
    expect(await claimDueFetchJobs(db, { now: 3_000, limit: 10, workerId: 'b', leaseMs: 1_000, running: [] })).toEqual([]);
    // Once the lease has run out (the holder died), another worker takes the job.
    expect((await claimDueFetchJobs(db, { now: 4_500, limit: 10, workerId: 'b', leaseMs: 1_000, running: [] })).map((job) => job.callId)).toEqual(['first', 'second']);
    expect(await findNextFetchJobRunAt(db, 4_500)).toBe(5_000);
  });

  it('claims due downloads before due polls, however long the polls have waited', async () => {
    for (const [callId, schedule] of [
      ['poll-oldest', poll(1_000, 99_000)],
      ['poll-older', poll(2_000, 99_000)],
      ['poll-overtaken', poll(500, 99_000)],
      ['ready-later', download(5_000, 99_000)],
      ['ready-first', download(4_000, 99_000)],
      ['ready-not-due', download(9_000, 99_000)],
    ] as const) {
      await addCall(callId);
      await scheduleFetchJob(db, callId, schedule);
    }
    // READY came for a call that was being polled: its job is a download now.
    await scheduleFetchJob(db, 'poll-overtaken', download(5_500, 99_000));
    const claim = (workerId: string, limit: number) => claimDueFetchJobs(db, { now: 6_000, limit, workerId, leaseMs: 60_000, running: [] });
    expect((await claim('a', 1)).map((job) => job.callId)).toEqual(['ready-first']);
    // What the downloads leave of the limit goes to the polls, oldest first.
    expect((await claim('b', 3)).map((job) => job.callId)).toEqual(['ready-later', 'poll-overtaken', 'poll-oldest']);
    expect((await claim('c', 5)).map((job) => job.callId)).toEqual(['poll-older']);
  });

  it('gives a download that an older release scheduled (as a poll, since it knew no priority) its priority once it is retried', async () => {
    await addCall('from-old-release');
    await sql`insert into fetch_jobs (call_id, run_at, deadline_at, attempts, version) values ('from-old-release', 1000, 99000, 0, 7)`.execute(db);
    const [attempt] = await claimDueFetchJobs(db, { now: 1_000, limit: 1, workerId: 'a', leaseMs: 60_000, running: [] });
    await rescheduleFetchJob(db, attempt!, { runAt: 3_000, action: 'fetch-now', lastError: 'HTTP 503' });
    await addCall('poll');
    await scheduleFetchJob(db, 'poll', poll(2_000, 99_000));
    expect((await claimDueFetchJobs(db, { now: 4_000, limit: 1, workerId: 'b', leaseMs: 60_000, running: [] })).map((job) => job.callId)).toEqual(['from-old-release']);
  });

  it('lets an event reschedule a running job without the attempt overwriting it', async () => {
    await addCall('raced');
    await scheduleFetchJob(db, 'raced', poll(1_000, 10_000));
    const [running] = await claimDueFetchJobs(db, { now: 1_000, limit: 1, workerId: 'a', leaseMs: 60_000, running: [] });
    await scheduleFetchJob(db, 'raced', download(1_500, 20_000)); // READY arrived while the poll ran
    await rescheduleFetchJob(db, running!, { runAt: 9_000, action: 'poll', lastError: 'HTTP 404' });
    expect(await findFetchJob(db, 'raced')).toMatchObject({ runAt: 1_500, deadlineAt: 20_000, attempts: 0 });
    expect(await claimDueFetchJobs(db, { now: 1_500, limit: 1, workerId: 'b', leaseMs: 60_000, running: [] })).toHaveLength(1);
  });

  it('a worker whose lease was taken over learns it at renewal, and its failure leaves the new holder alone', async () => {
    await addCall('taken');
    await scheduleFetchJob(db, 'taken', poll(1_000, 100_000));
    const [stale] = await claimDueFetchJobs(db, { now: 1_000, limit: 1, workerId: 'a', leaseMs: 100, running: [] });
    // a's renewals did not get through in time; b takes the job over.
    const [current] = await claimDueFetchJobs(db, { now: 2_000, limit: 1, workerId: 'b', leaseMs: 60_000, running: [] });
    expect(current).toMatchObject({ callId: 'taken', leasedBy: 'b' });

    expect(await renewFetchJobLeases(db, 'a', ['taken'], 3_000)).toEqual(new Set());
    expect(await renewFetchJobLeases(db, 'b', ['taken'], 70_000)).toEqual(new Set(['taken']));
    await rescheduleFetchJob(db, stale!, { runAt: 5_000, action: 'poll', lastError: 'HTTP 503' });
    await releaseFetchJob(db, stale!);
    expect(await deleteFetchJob(db, 'taken', stale!)).toBe(false);
    // b still holds it: nobody else can claim it, and its schedule is untouched.
    expect(await claimDueFetchJobs(db, { now: 10_000, limit: 1, workerId: 'c', leaseMs: 60_000, running: [] })).toEqual([]);
    expect(await findFetchJob(db, 'taken')).toMatchObject({ runAt: 1_000, attempts: 0, leasedBy: 'b' });
  });

  it('never shortens a lease: a renewal slow to arrive leaves a later claim of the same worker standing', async () => {
    await addCall('slow-renewal');
    await scheduleFetchJob(db, 'slow-renewal', poll(1_000, 100_000));
    await claimDueFetchJobs(db, { now: 1_000, limit: 1, workerId: 'a', leaseMs: 10_000, running: [] });
    expect(await renewFetchJobLeases(db, 'a', ['slow-renewal'], 5_000)).toEqual(new Set(['slow-renewal']));
    // Leased until 11,000 still: another worker cannot take it at 6,000.
    expect(await claimDueFetchJobs(db, { now: 6_000, limit: 1, workerId: 'b', leaseMs: 10_000, running: [] })).toEqual([]);
    expect(await renewFetchJobLeases(db, 'a', ['slow-renewal'], 20_000)).toEqual(new Set(['slow-renewal']));
    expect(await claimDueFetchJobs(db, { now: 15_000, limit: 1, workerId: 'b', leaseMs: 10_000, running: [] })).toEqual([]);
  });

  it('does not hand a worker a job it is still running, even once its lease ran out', async () => {
    await addCall('long');
    await scheduleFetchJob(db, 'long', poll(1_000, 10_000));
    await claimDueFetchJobs(db, { now: 1_000, limit: 1, workerId: 'a', leaseMs: 100, running: [] });
    expect(await claimDueFetchJobs(db, { now: 5_000, limit: 1, workerId: 'a', leaseMs: 100, running: ['long'] })).toEqual([]);
    expect(await claimDueFetchJobs(db, { now: 5_000, limit: 1, workerId: 'a', leaseMs: 100, running: [] })).toHaveLength(1);
  });

  it('never gives a job made again the version an old attempt holds', async () => {
    await addCall('again');
    await scheduleFetchJob(db, 'again', poll(1_000, 10_000));
    const [stale] = await claimDueFetchJobs(db, { now: 1_000, limit: 1, workerId: 'a', leaseMs: 60_000, running: [] });
    await deleteFetchJob(db, 'again'); // DISABLED arrived
    await scheduleFetchJob(db, 'again', download(2_000, 20_000)); // then READY
    await rescheduleFetchJob(db, stale!, { runAt: 9_000, action: 'poll', lastError: 'HTTP 404' });
    expect(await findFetchJob(db, 'again')).toMatchObject({ runAt: 2_000, deadlineAt: 20_000, attempts: 0, lastError: null });
  });

  // EXPLAIN QUERY PLAN and its wording are SQLite's. With no statistics its planner picks these
  // indexes whatever the table holds.
  it.skipIf(testDialect !== 'sqlite')('finds due work through an index, so a pass costs what is due, not what is stored', async () => {
    for (const [query, index] of schedulerQueries()) {
      const compiled = query.compile();
      const plan = await db.executeQuery<{ detail: string }>({ ...compiled, sql: `explain query plan ${compiled.sql}` });
      const details = plan.rows.map((row) => row.detail).join('; ');
      expect(details).toMatch(new RegExp(`USING INDEX ${index}\\b`));
      expect(details).not.toMatch(/TEMP B-TREE/);
    }
  });

  // PostgreSQL's planner goes by statistics: on a near-empty table a sequential scan is the right
  // plan, so the check stores what a busy service holds (thousands of jobs, a few due) and analyzes.
  it.skipIf(testDialect !== 'postgres')('finds due work through an index once many jobs are stored, so a pass costs what is due', async () => {
    await sql`insert into calls (call_id, first_seen_at, last_seen_at, attachment_state)
      select 'stored-' || n, 0, 0, 'pending' from generate_series(1, 5000) as n`.execute(db);
    await sql`insert into fetch_jobs (call_id, run_at, deadline_at, attempts, version)
      select 'stored-' || n, 1000000 + n, 9000000, 0, n from generate_series(1, 5000) as n`.execute(db);
    await addCall('due');
    await scheduleFetchJob(db, 'due', poll(500, 9_000_000));
    await sql`analyze fetch_jobs`.execute(db);
    for (const [query, index] of schedulerQueries()) {
      const compiled = query.compile();
      const plan = await db.executeQuery<{ 'QUERY PLAN': string }>({ ...compiled, sql: `explain ${compiled.sql}` });
      const details = plan.rows.map((row) => row['QUERY PLAN']).join('\n');
      expect(details).toMatch(new RegExp(`Index Scan using ${index}\\b`));
      expect(details).not.toMatch(/Seq Scan|Sort/);
    }
    expect((await claimDueFetchJobs(db, { now: 1_000, limit: 4, workerId: 'a', leaseMs: 1_000, running: [] })).map((job) => job.callId)).toEqual(['due']);
  });

  // SQLite has a single writer, and one connection per process: claims cannot overlap there.
  it.skipIf(testDialect !== 'postgres')('never hands the same job to two workers claiming at the same moment on separate connections', async () => {
    const JOBS = 60;
    for (let index = 0; index < JOBS; index++) {
      const callId = `shared-${String(index).padStart(2, '0')}`;
      await addCall(callId);
      await scheduleFetchJob(db, callId, poll(1_000 + (index % 7), 100_000));
    }
    // Four replicas, each with its own pool, each running two claims at once: eight transactions.
    const replicas = Array.from({ length: 4 }, () => createDb(database));
    try {
      await Promise.all(replicas.flatMap((replica) => [sql`select 1`.execute(replica), sql`select 1`.execute(replica)]));
      const claims: { workerId: string; job: FetchJob }[] = [];
      for (let round = 0; round < 20 && claims.length < JOBS; round++) {
        const results = await Promise.all(
          replicas.flatMap((replica, index) =>
            ['x', 'y'].map(async (slot) => {
              const workerId = `replica-${index}-${slot}-${round}`;
              const jobs = await claimDueFetchJobs(replica, { now: 2_000, limit: 3, workerId, leaseMs: 60_000, running: [] });
              return jobs.map((job) => ({ workerId, job }));
            }),
          ),
        );
        claims.push(...results.flat());
      }
      const callIds = claims.map(({ job }) => job.callId);
      expect(callIds.length).toBe(JOBS);
      expect(new Set(callIds).size).toBe(JOBS);
      // Each job's lease is held by the worker that was handed it.
      for (const { workerId, job } of claims) {
        expect(job.leasedBy).toBe(workerId);
        expect((await findFetchJob(db, job.callId))?.leasedBy).toBe(workerId);
      }
      expect(await claimDueFetchJobs(db, { now: 2_000, limit: JOBS, workerId: 'late', leaseMs: 60_000, running: [] })).toEqual([]);
    } finally {
      await Promise.all(replicas.map((replica) => replica.destroy()));
    }
  });
});
