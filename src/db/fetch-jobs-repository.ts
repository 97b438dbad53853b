import { randomInt } from 'node:crypto';
import { sql, type Selectable } from 'kysely';
import type { Db, DbOrTrx } from './database.ts';
import { isPostgres } from './dialect.ts';
import type { FetchJobsTable } from './schema.ts';
import type { FetchSchedule } from '../calls/fetch-plan.ts';

export interface FetchJob {
  callId: string;
  runAt: number;
  deadlineAt: number;
  attempts: number;
  lastError: string | null;
  version: number;
  /** The worker holding the lease, if any. */
  leasedBy: string | null;
}

/** Claim order: every due download before any due poll. */
const PRIORITIES = [0, 1] as const;
const priorityOf = (action: FetchSchedule['action']) => (action === 'fetch-now' ? 0 : 1);

/**
 * Schedules a call's fetch job, replacing any earlier schedule; a running attempt keeps its
 * lease. Every schedule gets a fresh random version, never a counter: a job deleted and made
 * again must not match the version an old attempt still holds.
 */
export async function scheduleFetchJob(db: DbOrTrx, callId: string, schedule: FetchSchedule): Promise<void> {
  const version = randomInt(2 ** 47);
  const fields = { run_at: schedule.runAt, deadline_at: schedule.deadlineAt, attempts: 0, priority: priorityOf(schedule.action), version };
  await db
    .insertInto('fetch_jobs')
    .values({ call_id: callId, ...fields })
    .onConflict((conflict) => conflict.column('call_id').doUpdateSet({ ...fields, last_error: null }))
    .execute();
}

/** With `attempt`: only while that attempt's schedule (version) and lease still stand. */
export async function deleteFetchJob(db: DbOrTrx, callId: string, attempt?: Pick<FetchJob, 'version' | 'leasedBy'>): Promise<boolean> {
  let query = db.deleteFrom('fetch_jobs').where('call_id', '=', callId);
  if (attempt !== undefined) query = query.where('version', '=', attempt.version).where('locked_by', '=', attempt.leasedBy);
  const result = await query.executeTakeFirst();
  return result.numDeletedRows > 0n;
}

/**
 * Leases up to `limit` due jobs to `workerId`, skipping the calls it is already running: due
 * downloads first, then due polls, each oldest first. Each scan walks the (priority, run_at)
 * index from the oldest due job, so its cost follows the work that is due, not the number of
 * calls stored.
 */
export async function claimDueFetchJobs(
  db: Db,
  input: { now: number; limit: number; workerId: string; leaseMs: number; running: string[] },
): Promise<FetchJob[]> {
  return db.transaction().execute(async (trx) => {
    const rows: Selectable<FetchJobsTable>[] = [];
    for (const priority of PRIORITIES) {
      if (rows.length === input.limit) break;
      let due = selectDueFetchJobs(trx, input.now, priority, input.limit - rows.length);
      // A job rescheduled while its attempt still runs here waits for that attempt to end.
      if (input.running.length > 0) due = due.where('call_id', 'not in', input.running);
      // Replicas claiming at the same moment each take different jobs, none waits for another.
      // (SQLite has one writer at a time, and no such clause.)
      if (isPostgres(trx)) due = due.forUpdate().skipLocked();
      rows.push(...(await due.execute()));
    }
    if (rows.length === 0) return [];
    await trx
      .updateTable('fetch_jobs')
      .set({ locked_until: input.now + input.leaseMs, locked_by: input.workerId })
      .where(
        'call_id',
        'in',
        rows.map((row) => row.call_id),
      )
      .execute();
    return rows.map((row) => ({ ...toFetchJob(row), leasedBy: input.workerId }));
  });
}

/**
 * Extends the leases a worker still holds, so a long download is not taken over; returns the
 * calls whose lease it still held. One missing was taken over (the lease ran out meanwhile).
 * A lease is never shortened: a renewal that was slow to arrive must not undo a later claim's.
 */
export async function renewFetchJobLeases(db: DbOrTrx, workerId: string, callIds: string[], lockedUntil: number): Promise<Set<string>> {
  if (callIds.length === 0) return new Set();
  const rows = await db
    .updateTable('fetch_jobs')
    .set({ locked_until: sql<number>`case when locked_until > ${lockedUntil} then locked_until else ${lockedUntil} end` })
    .where('locked_by', '=', workerId)
    .where('call_id', 'in', callIds)
    .returning('call_id')
    .execute();
  return new Set(rows.map((row) => row.call_id));
}

/**
 * Moves a failed attempt's job to its next run and releases the lease. When an event
 * rescheduled the job meanwhile (version changed), that newer schedule stands; when another
 * worker holds the lease now, the job is left to it. `action` is what the next attempt will be,
 * which also sets the priority of a job an older release scheduled without one.
 */
export async function rescheduleFetchJob(
  db: DbOrTrx,
  job: FetchJob,
  next: { runAt: number; action: FetchSchedule['action']; lastError: string },
): Promise<void> {
  const rescheduled = await db
    .updateTable('fetch_jobs')
    .set({
      run_at: next.runAt,
      priority: priorityOf(next.action),
      attempts: job.attempts + 1,
      last_error: next.lastError,
      locked_until: null,
      locked_by: null,
    })
    .where('call_id', '=', job.callId)
    .where('version', '=', job.version)
    // A worker whose lease ran out and was taken over must not undo the new holder's lease.
    .where('locked_by', '=', job.leasedBy)
    .executeTakeFirst();
  if (rescheduled.numUpdatedRows === 0n) await releaseFetchJob(db, job);
}

/** Gives up a lease this job's worker holds; a lease another worker took since is left alone. */
export async function releaseFetchJob(db: DbOrTrx, job: FetchJob): Promise<void> {
  if (job.leasedBy === null) return;
  await db
    .updateTable('fetch_jobs')
    .set({ locked_until: null, locked_by: null })
    .where('call_id', '=', job.callId)
    .where('locked_by', '=', job.leasedBy)
    .execute();
}

/** When the next unleased job falls due, or null when none is scheduled. */
export async function findNextFetchJobRunAt(db: DbOrTrx, now: number): Promise<number | null> {
  const row = await selectNextFetchJobRunAt(db, now).executeTakeFirst();
  return row?.run_at ?? null;
}

/** The scheduler's queries, exported so a test can check their plans walk an index. */
export function selectDueFetchJobs(db: DbOrTrx, now: number, priority: (typeof PRIORITIES)[number], limit: number) {
  return selectUnleasedFetchJobs(db, now)
    .selectAll()
    .where('priority', '=', priority)
    .where('run_at', '<=', now)
    .orderBy('run_at')
    .limit(limit);
}

export function selectNextFetchJobRunAt(db: DbOrTrx, now: number) {
  return selectUnleasedFetchJobs(db, now).select('run_at').orderBy('run_at').limit(1);
}

function selectUnleasedFetchJobs(db: DbOrTrx, now: number) {
  return db
    .selectFrom('fetch_jobs')
    .where((eb) => eb.or([eb('locked_until', 'is', null), eb('locked_until', '<=', now)]));
}

/**
 * Brings waiting jobs forward to `now`, ahead of due polls (an operator fixed what they were
 * failing on); attempts, deadline and last error stay. A job running now is left to its attempt.
 * Without `callId`: every waiting job. Returns how many were brought forward.
 */
export async function hurryFetchJobs(db: DbOrTrx, now: number, callId?: string): Promise<number> {
  const result = await db
    .updateTable('fetch_jobs')
    .set({ run_at: now, priority: priorityOf('fetch-now') })
    .where((eb) => eb.or([eb('locked_until', 'is', null), eb('locked_until', '<=', now)]))
    .where('run_at', '>', now)
    .$if(callId !== undefined, (query) => query.where('call_id', '=', callId as string))
    .executeTakeFirst();
  return Number(result.numUpdatedRows);
}

export async function findFetchJob(db: DbOrTrx, callId: string): Promise<FetchJob | null> {
  const row = await db.selectFrom('fetch_jobs').selectAll().where('call_id', '=', callId).executeTakeFirst();
  return row ? toFetchJob(row) : null;
}

function toFetchJob(row: Selectable<FetchJobsTable>): FetchJob {
  return {
    callId: row.call_id,
    runAt: row.run_at,
    deadlineAt: row.deadline_at,
    attempts: row.attempts,
    lastError: row.last_error,
    version: row.version,
    leasedBy: row.locked_by,
  };
}

/**
 * For the metrics: jobs running (leased), and jobs due but waiting for a slot with the run_at of
 * the one waiting longest. One pass over the due part of the run_at index.
 */
export async function summariseDueFetchJobs(db: DbOrTrx, now: number): Promise<{ running: number; waiting: number; oldestWaitingRunAt: number | null }> {
  const leased = sql<boolean>`locked_until is not null and locked_until > ${now}`;
  const row = await db
    .selectFrom('fetch_jobs')
    .select([
      sql<number>`count(case when ${leased} then 1 end)`.as('running'),
      sql<number>`count(case when not (${leased}) then 1 end)`.as('waiting'),
      sql<number | null>`min(case when not (${leased}) then run_at end)`.as('oldest'),
    ])
    .where('run_at', '<=', now)
    .executeTakeFirstOrThrow();
  return { running: Number(row.running), waiting: Number(row.waiting), oldestWaitingRunAt: row.oldest === null ? null : Number(row.oldest) };
}

/** The jobs of a page of calls, by call id (calls without one are absent). */
export async function findFetchJobs(db: DbOrTrx, callIds: string[]): Promise<Map<string, FetchJob>> {
  if (callIds.length === 0) return new Map();
  const rows = await db.selectFrom('fetch_jobs').selectAll().where('call_id', 'in', callIds).execute();
  return new Map(rows.map((row) => [row.call_id, toFetchJob(row)]));
}
