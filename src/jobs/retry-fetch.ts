import type { AttachmentState } from '../calls/call-state.ts';
import { planRetry, type PollTimings } from '../calls/fetch-plan.ts';
import { findCall, listFailedCallIds, resetFailedAttachment } from '../db/calls-repository.ts';
import type { Db } from '../db/database.ts';
import { hurryFetchJobs, scheduleFetchJob } from '../db/fetch-jobs-repository.ts';

/**
 * An operator's "try again now", shared by the API and the CLI: a failed call goes back to
 * pending for another full wait; a pending one has its next attempt brought forward to now
 * (after fixing DNS, a firewall or the allow-list, nobody should wait half an hour for it).
 */
export type RetryOutcome =
  | { result: 'unknown' }
  /** Only failed and pending calls have a recording still to fetch. */
  | { result: 'refused'; state: AttachmentState }
  | { result: 'retrying'; was: 'failed' | 'pending' };

export async function retryFetch(db: Db, callId: string, now: number, timings: PollTimings): Promise<RetryOutcome> {
  return db.transaction().execute(async (trx) => {
    // Locked, so the state named in a refusal is the one that refused the retry.
    const call = await findCall(trx, callId, { forUpdate: true });
    if (call === null) return { result: 'unknown' };
    if (call.attachment.state === 'pending') {
      // An attempt running right now is left to finish: it is that attempt.
      await hurryFetchJobs(trx, now, callId);
      return { result: 'retrying', was: 'pending' };
    }
    if (!(await resetFailedAttachment(trx, callId))) return { result: 'refused', state: call.attachment.state };
    await scheduleFetchJob(trx, callId, planRetry(now, timings));
    return { result: 'retrying', was: 'failed' };
  });
}

/** How many calls in `state` were sent back to fetch now. */
export async function retryAllFetches(db: Db, state: 'pending' | 'failed', now: number, timings: PollTimings): Promise<number> {
  if (state === 'pending') return hurryFetchJobs(db, now);
  let retried = 0;
  // In batches, so that a backlog of thousands never holds the database's one writer for long.
  for (;;) {
    const batch = await db.transaction().execute(async (trx) => {
      const callIds = await listFailedCallIds(trx, RETRY_BATCH_SIZE);
      for (const callId of callIds) {
        if (await resetFailedAttachment(trx, callId)) await scheduleFetchJob(trx, callId, planRetry(now, timings));
      }
      return callIds.length;
    });
    retried += batch;
    if (batch < RETRY_BATCH_SIZE) return retried;
  }
}

const RETRY_BATCH_SIZE = 500;
