import type { AttachmentState } from '../calls/call-state.ts';
import { planRetry, type PollTimings } from '../calls/fetch-plan.ts';
import type { Clock } from '../clock.ts';
import { findCall, listFailedCallIds, resetFailedAttachment } from '../db/calls-repository.ts';
import type { Db } from '../db/database.ts';
import { hurryFetchJobs, scheduleFetchJob } from '../db/fetch-jobs-repository.ts';
import type { CallChanges } from '../live/call-changes.ts';
import type { Logger } from '../log/logger.ts';

interface FetchRetryDeps {
  db: Db;
  clock: Clock;
  logger: Logger;
  /** The poll timings a failed call's new wait is planned with. */
  config: PollTimings;
  /** A fetch job is due now: wakes this replica's scheduler and tells the others. */
  fetchJobsDue: () => void;
  callChanges: Pick<CallChanges, 'announce' | 'announceResync'>;
}

type RetryOutcome =
  | { result: 'unknown' }
  /** Only failed and pending calls have a recording still to fetch. */
  | { result: 'refused'; state: AttachmentState }
  | { result: 'retrying'; was: 'failed' | 'pending' };

/**
 * An operator's "try again now", whoever asks (the API, and through it the CLI and the
 * dashboard): a failed call goes back to pending for another full wait; a pending one has its
 * next attempt brought forward to now (after fixing DNS, a firewall or the allow-list, nobody
 * should wait half an hour for it). The whole of it is here: the change, the log line saying
 * what was done, the scheduler woken and the live list told; a caller only answers.
 */
export async function retryFetch(deps: FetchRetryDeps, callId: string): Promise<RetryOutcome> {
  const now = deps.clock.now();
  const outcome = await deps.db.transaction().execute(async (trx): Promise<RetryOutcome> => {
    // Locked, so the state named in a refusal is the one that refused the retry.
    const call = await findCall(trx, callId, { forUpdate: true });
    if (call === null) return { result: 'unknown' };
    if (call.attachment.state === 'pending') {
      // An attempt running right now is left to finish: it is that attempt.
      await hurryFetchJobs(trx, now, callId);
      return { result: 'retrying', was: 'pending' };
    }
    if (!(await resetFailedAttachment(trx, callId))) return { result: 'refused', state: call.attachment.state };
    await scheduleFetchJob(trx, callId, planRetry(now, deps.config));
    return { result: 'retrying', was: 'failed' };
  });
  if (outcome.result !== 'retrying') return outcome;
  deps.logger.info(
    { call_id: callId, was: outcome.was },
    outcome.was === 'failed'
      ? `[WaVoIP Recording Webhook] Retry requested for call ${callId}`
      : `[WaVoIP Recording Webhook] Next attempt for call ${callId} brought forward to now`,
  );
  deps.fetchJobsDue();
  deps.callChanges.announce([callId]);
  return outcome;
}

/** Sends every call in `state` back to fetch now; returns how many went. */
export async function retryAllFetches(deps: FetchRetryDeps, state: 'pending' | 'failed'): Promise<number> {
  const retried = await resetAll(deps.db, state, deps.clock.now(), deps.config);
  deps.logger.info({ state, retried }, `[WaVoIP Recording Webhook] Retry of every ${state} call requested: ${retried} to fetch now`);
  if (retried > 0) {
    deps.fetchJobsDue();
    deps.callChanges.announceResync();
  }
  return retried;
}

async function resetAll(db: Db, state: 'pending' | 'failed', now: number, timings: PollTimings): Promise<number> {
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
