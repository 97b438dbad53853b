import type { Clock } from '../clock.ts';
import type { Db } from '../db/database.ts';
import {
  claimDueFetchJobs,
  findNextFetchJobRunAt,
  renewFetchJobLeases,
  type FetchJob,
} from '../db/fetch-jobs-repository.ts';
import type { Logger } from '../log/logger.ts';
import { createLeasedWorker } from './leased-worker.ts';

export type FetchJobRunner = (job: FetchJob, signal: AbortSignal) => Promise<void>;

/**
 * Runs due fetch jobs, at most `concurrency` at a time, each leased in the database (see
 * leased-worker.ts): a process that dies mid-download loses the lease after `leaseMs` and the
 * job runs again. `wake()` when new work is scheduled now; `stop({ graceMs })` lets the
 * downloads in flight finish within the grace, then aborts the rest (their jobs run again).
 */
export function createFetchScheduler(deps: {
  db: Db;
  clock: Clock;
  logger: Logger;
  workerId: string;
  concurrency: number;
  leaseMs: number;
  runJob: FetchJobRunner;
}) {
  const { db, workerId, leaseMs } = deps;
  return createLeasedWorker<FetchJob>({
    clock: deps.clock,
    logger: deps.logger,
    concurrency: deps.concurrency,
    leaseMs,
    idOf: (job) => job.callId,
    claim: (now, limit, running) => claimDueFetchJobs(db, { now, limit, workerId, leaseMs, running }),
    nextWakeAt: (now) => findNextFetchJobRunAt(db, now),
    renew: (callIds, lockedUntil) => renewFetchJobLeases(db, workerId, callIds, lockedUntil),
    run: deps.runJob,
    messages: {
      claimFailed: '[WaVoIP Jobs] Could not claim due jobs; trying again in 1s',
      renewFailed: '[WaVoIP Jobs] Could not renew job leases',
      leaseGone: 'its lease is gone: taken over, or the job was made again',
      crashed: (job) => ({ context: { call_id: job.callId }, msg: `[WaVoIP Jobs] Fetch job for call ${job.callId} crashed` }),
    },
    describe: {
      claimed: 'jobs',
      item: 'download',
      items: 'downloads',
      afterAbort: (count) => (count === 1 ? 'its job runs again later' : 'their jobs run again later'),
    },
  });
}
