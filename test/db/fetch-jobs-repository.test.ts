import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createDb, migrateToLatest, type Db } from '../../src/db/database.ts';
import { saveCall } from '../../src/db/calls-repository.ts';
import {
  claimDueFetchJobs,
  deleteFetchJob,
  findFetchJob,
  findNextFetchJobRunAt,
  rescheduleFetchJob,
  scheduleFetchJob,
  selectDueFetchJobs,
  selectNextFetchJobRunAt,
} from '../../src/db/fetch-jobs-repository.ts';
import { applyCallEvent } from '../../src/calls/call-state.ts';
import { makeDataDir } from '../support/service-harness.ts';

let db: Db;

beforeEach(async () => {
  db = createDb({ dialect: 'sqlite', filename: path.join(await makeDataDir(), 'test.sqlite') });
  await migrateToLatest(db);
});
afterEach(async () => {
  await db.destroy();
});

async function addCall(callId: string): Promise<void> {
  await saveCall(db, applyCallEvent(null, { type: 'RECORD', callId, recordStatus: 'RECORDING', recordUrl: null, deviceId: null }, 0));
}

describe('fetch jobs in SQLite', () => {
  it('claims due jobs oldest first, each once, and leaves jobs not yet due', async () => {
    for (const [callId, runAt] of [['late', 5_000], ['first', 1_000], ['second', 2_000]] as const) {
      await addCall(callId);
      await scheduleFetchJob(db, callId, runAt, 10_000);
    }
    const claimed = await claimDueFetchJobs(db, { now: 3_000, limit: 10, workerId: 'a', leaseMs: 1_000, running: [] });
    expect(claimed.map((job) => job.callId)).toEqual(['first', 'second']);
    expect(await claimDueFetchJobs(db, { now: 3_000, limit: 10, workerId: 'b', leaseMs: 1_000, running: [] })).toEqual([]);
    // Once the lease has run out (the holder died), another worker takes the job.
    expect((await claimDueFetchJobs(db, { now: 4_500, limit: 10, workerId: 'b', leaseMs: 1_000, running: [] })).map((job) => job.callId)).toEqual(['first', 'second']);
    expect(await findNextFetchJobRunAt(db, 4_500)).toBe(5_000);
  });

  it('lets an event reschedule a running job without the attempt overwriting it', async () => {
    await addCall('raced');
    await scheduleFetchJob(db, 'raced', 1_000, 10_000);
    const [running] = await claimDueFetchJobs(db, { now: 1_000, limit: 1, workerId: 'a', leaseMs: 60_000, running: [] });
    await scheduleFetchJob(db, 'raced', 1_500, 20_000); // READY arrived while the poll ran
    await rescheduleFetchJob(db, running!, 9_000, 'HTTP 404');
    expect(await findFetchJob(db, 'raced')).toMatchObject({ runAt: 1_500, deadlineAt: 20_000, attempts: 0 });
    expect(await claimDueFetchJobs(db, { now: 1_500, limit: 1, workerId: 'b', leaseMs: 60_000, running: [] })).toHaveLength(1);
  });

  it('does not hand a worker a job it is still running, even once its lease ran out', async () => {
    await addCall('long');
    await scheduleFetchJob(db, 'long', 1_000, 10_000);
    await claimDueFetchJobs(db, { now: 1_000, limit: 1, workerId: 'a', leaseMs: 100, running: [] });
    expect(await claimDueFetchJobs(db, { now: 5_000, limit: 1, workerId: 'a', leaseMs: 100, running: ['long'] })).toEqual([]);
    expect(await claimDueFetchJobs(db, { now: 5_000, limit: 1, workerId: 'a', leaseMs: 100, running: [] })).toHaveLength(1);
  });

  it('never gives a job made again the version an old attempt holds', async () => {
    await addCall('again');
    await scheduleFetchJob(db, 'again', 1_000, 10_000);
    const [stale] = await claimDueFetchJobs(db, { now: 1_000, limit: 1, workerId: 'a', leaseMs: 60_000, running: [] });
    await deleteFetchJob(db, 'again'); // DISABLED arrived
    await scheduleFetchJob(db, 'again', 2_000, 20_000); // then READY
    await rescheduleFetchJob(db, stale!, 9_000, 'HTTP 404');
    expect(await findFetchJob(db, 'again')).toMatchObject({ runAt: 2_000, deadlineAt: 20_000, attempts: 0, lastError: null });
  });

  it('finds due work through the run_at index, so a pass costs what is due, not what is stored', async () => {
    for (const query of [selectDueFetchJobs(db, 1_000, 4), selectNextFetchJobRunAt(db, 1_000)]) {
      const compiled = query.compile();
      const plan = await db.executeQuery<{ detail: string }>({ ...compiled, sql: `explain query plan ${compiled.sql}` });
      const details = plan.rows.map((row) => row.detail).join('; ');
      expect(details).toMatch(/USING INDEX fetch_jobs_run_at/);
      expect(details).not.toMatch(/TEMP B-TREE/);
    }
  });
});
