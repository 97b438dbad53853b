import { sql } from 'kysely';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { applyCallEvent } from '../../src/calls/call-state.ts';
import { systemClock } from '../../src/clock.ts';
import { loadConfig } from '../../src/config/config.ts';
import { saveCall } from '../../src/db/calls-repository.ts';
import { createDb, migrateToLatest, type Db } from '../../src/db/database.ts';
import { findFetchJob, scheduleFetchJob, type FetchJob } from '../../src/db/fetch-jobs-repository.ts';
import { createFetchScheduler } from '../../src/jobs/fetch-scheduler.ts';
import { captureLog } from '../support/captured-log.ts';
import { makeDataDir } from '../support/service-harness.ts';

/**
 * The scheduler's leases against a real SQLite file, with time moved by hand: renewals that stop
 * getting through must stop the download before the lease it last wrote runs out, since another
 * replica may take the job over from then on.
 */
const LEASE_MS = 3_000;
const RENEW_EVERY_MS = LEASE_MS / 3;
/** How long before its lease runs out a download is stopped, at the latest. */
const MARGIN_MS = LEASE_MS / 10;

let db: Db;
const log = captureLog('warn');
const { logger } = log;

beforeEach(async () => {
  db = createDb(loadConfig({ DATA_DIR: await makeDataDir() }).database);
  await migrateToLatest(db);
  log.lines.length = 0;
  vi.useFakeTimers({ toFake: ['Date', 'setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'setImmediate'] });
});
afterEach(async () => {
  vi.useRealTimers();
  await db.destroy();
});

/** A download that runs until it is aborted, noting when and why. */
function startScheduler() {
  const runs: { job: FetchJob; startedAt: number; abortedAt?: number; reason?: string }[] = [];
  const scheduler = createFetchScheduler({
    db,
    clock: systemClock,
    logger,
    workerId: 'this-replica',
    concurrency: 1,
    leaseMs: LEASE_MS,
    runJob: (job, signal) =>
      new Promise<void>((resolve) => {
        const run: (typeof runs)[number] = { job, startedAt: Date.now() };
        runs.push(run);
        signal.addEventListener('abort', () => {
          run.abortedAt = Date.now();
          run.reason = (signal.reason as Error).message;
          resolve();
        });
      }),
  });
  scheduler.start();
  return { scheduler, runs };
}

async function scheduleDownload(callId: string): Promise<void> {
  await saveCall(db, applyCallEvent(null, { type: 'RECORD', callId, recordStatus: 'READY', recordUrl: null, deviceId: null }, Date.now()));
  await scheduleFetchJob(db, callId, { action: 'fetch-now', runAt: Date.now(), deadlineAt: Date.now() + 3_600_000 });
}

describe('lease renewal', () => {
  it('keeps a long download going while renewals get through', async () => {
    await scheduleDownload('LONG');
    const { scheduler, runs } = startScheduler();
    await vi.advanceTimersByTimeAsync(10 * LEASE_MS);
    expect(runs).toHaveLength(1);
    expect(runs[0]!.abortedAt).toBeUndefined();
    expect((await findFetchJob(db, 'LONG'))?.leasedBy).toBe('this-replica');
    const lockedUntil = await sql<{ locked_until: number }>`select locked_until from fetch_jobs where call_id = 'LONG'`.execute(db);
    expect(lockedUntil.rows[0]!.locked_until).toBeGreaterThan(Date.now());
    await scheduler.stop();
  });

  it('stops the download a tenth of a lease before the lease it last wrote runs out once renewals fail, and not at the first failure', async () => {
    await scheduleDownload('CUT-OFF');
    const { scheduler, runs } = startScheduler();
    await vi.advanceTimersByTimeAsync(RENEW_EVERY_MS + 1);
    expect(runs).toHaveLength(1);

    // The database refuses every statement on the table from now on.
    await sql`alter table fetch_jobs rename to fetch_jobs_unreachable`.execute(db);
    await vi.advanceTimersByTimeAsync(RENEW_EVERY_MS);
    expect(runs[0]!.abortedAt).toBeUndefined();
    await vi.advanceTimersByTimeAsync(LEASE_MS);
    expect(runs[0]!.reason).toBe('its lease could not be renewed');
    expect(log.messages().filter((message) => message === '[WaVoIP Jobs] Could not renew job leases').length).toBeGreaterThanOrEqual(2);

    await sql`alter table fetch_jobs_unreachable rename to fetch_jobs`.execute(db);
    const { rows } = await sql<{ locked_until: number }>`select locked_until from fetch_jobs where call_id = 'CUT-OFF'`.execute(db);
    // (Less a millisecond: the check runs on setImmediate, which the fake clock puts a tick later.)
    expect(rows[0]!.locked_until - runs[0]!.abortedAt!).toBeGreaterThanOrEqual(MARGIN_MS - 1);
    await scheduler.stop();
  });

  it('stops the download when a renewal hangs, and runs it again, renewed as usual, once the database answers', async () => {
    await scheduleDownload('HUNG');
    const { scheduler, runs } = startScheduler();
    await vi.advanceTimersByTimeAsync(RENEW_EVERY_MS + 1);
    // A long statement holds SQLite's one connection: renewals wait behind it, without failing.
    let letGo!: () => void;
    const holding = db.transaction().execute(() => new Promise<void>((resolve) => (letGo = resolve)));
    await vi.advanceTimersByTimeAsync(LEASE_MS);
    expect(runs[0]!.reason).toBe('its lease could not be renewed');
    expect(log.messages()).toEqual([]);

    letGo();
    await holding;
    await vi.advanceTimersByTimeAsync(LEASE_MS);
    expect(runs).toHaveLength(2);
    await vi.advanceTimersByTimeAsync(10 * LEASE_MS);
    expect(runs[1]!.abortedAt).toBeUndefined();
    await scheduler.stop();
    expect(runs[1]!.reason).toBe('shutting down');
  });
});

describe('stop', () => {
  /** Downloads that take `durationMs[callId]` to finish (for ever when absent), or until aborted. */
  function startDraining(durationMs: Record<string, number>) {
    const runs: { callId: string; startedAt: number; finishedAt?: number; abortedAt?: number; reason?: string }[] = [];
    const scheduler = createFetchScheduler({
      db,
      clock: systemClock,
      logger,
      workerId: 'this-replica',
      concurrency: 2,
      leaseMs: LEASE_MS,
      runJob: (job, signal) =>
        new Promise<void>((resolve) => {
          const run: (typeof runs)[number] = { callId: job.callId, startedAt: Date.now() };
          runs.push(run);
          const duration = durationMs[job.callId];
          const timer = duration === undefined ? undefined : setTimeout(() => ((run.finishedAt = Date.now()), resolve()), duration);
          signal.addEventListener('abort', () => {
            clearTimeout(timer);
            run.abortedAt = Date.now();
            run.reason = (signal.reason as Error).message;
            resolve();
          });
        }),
    });
    scheduler.start();
    return { scheduler, runs };
  }

  it('claims nothing more, lets the downloads in flight finish within the grace, and aborts those still running after it', async () => {
    const GRACE_MS = 5 * LEASE_MS;
    await scheduleDownload('QUICK');
    await scheduleDownload('ENDLESS');
    const { scheduler, runs } = startDraining({ QUICK: 2 * LEASE_MS });
    await vi.advanceTimersByTimeAsync(1);
    expect(runs.map((run) => run.callId).sort()).toEqual(['ENDLESS', 'QUICK']);

    const stopAt = Date.now();
    let stopped = false;
    const stopping = scheduler.stop({ graceMs: GRACE_MS }).then(() => (stopped = true));
    await scheduleDownload('AFTER-STOP');
    scheduler.wake();
    // Longer than a lease: the leases of the jobs still running are renewed meanwhile.
    await vi.advanceTimersByTimeAsync(2 * LEASE_MS);
    const quick = runs.find((run) => run.callId === 'QUICK')!;
    expect(quick.finishedAt).toBe(quick.startedAt + 2 * LEASE_MS);
    expect(quick.abortedAt).toBeUndefined();
    expect(runs.find((run) => run.callId === 'ENDLESS')!.abortedAt).toBeUndefined();
    expect((await findFetchJob(db, 'ENDLESS'))?.leasedBy).toBe('this-replica');
    expect(stopped).toBe(false);

    await vi.advanceTimersByTimeAsync(GRACE_MS);
    expect(runs.find((run) => run.callId === 'ENDLESS')).toMatchObject({ abortedAt: stopAt + GRACE_MS, reason: 'shutting down' });
    await stopping;
    expect(runs.map((run) => run.callId)).not.toContain('AFTER-STOP');
    expect(log.messages()).toContain('Shutting down: 1 download still running after 15s; stopping it (its job runs again later)');
  });

  it('ends as soon as the downloads in flight have finished, without waiting out the grace', async () => {
    await scheduleDownload('QUICK');
    const { scheduler, runs } = startDraining({ QUICK: LEASE_MS });
    await vi.advanceTimersByTimeAsync(1);
    let stoppedAt: number | undefined;
    const stopping = scheduler.stop({ graceMs: 100 * LEASE_MS }).then(() => (stoppedAt = Date.now()));
    await vi.advanceTimersByTimeAsync(LEASE_MS);
    await stopping;
    expect(runs[0]!.finishedAt).toBe(runs[0]!.startedAt + LEASE_MS);
    expect(runs[0]!.abortedAt).toBeUndefined();
    expect(stoppedAt).toBe(runs[0]!.finishedAt);
  });
});
