import type { Clock } from '../clock.ts';
import type { Db } from '../db/database.ts';
import {
  claimDueFetchJobs,
  findNextFetchJobRunAt,
  renewFetchJobLeases,
  type FetchJob,
} from '../db/fetch-jobs-repository.ts';
import { coerceError } from '../errors.ts';
import type { Logger } from '../log/logger.ts';

export type FetchJobRunner = (job: FetchJob, signal: AbortSignal) => Promise<void>;

interface RunningJob {
  callId: string;
  promise: Promise<void>;
  abort: AbortController;
  /** The locked_until this worker last wrote for the job, at its claim or at a renewal. */
  leaseValidUntil: number;
  watchdog?: NodeJS.Timeout;
}

/**
 * Runs due fetch jobs, at most `concurrency` at a time. There is no fixed tick: it sleeps
 * until the next job is due, and `wake()` (new work scheduled now) or a finished job sends
 * it looking again at once. Every job is leased in the database, so a process that dies
 * mid-download loses the lease after `leaseMs` and the job runs again.
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
  const { db, clock, logger, concurrency, leaseMs, workerId } = deps;
  const running = new Map<string, RunningJob>();
  const renewEveryMs = Math.max(Math.floor(leaseMs / 3), 100);
  // A download still going when its lease runs out may be taken over by another replica: it is
  // stopped this long before, to allow for the clocks of the two replicas differing and for the
  // stop itself. A tenth of the lease (6 s of the default minute) is ample for both, and leaves
  // a slow renewal most of the lease to get through: a loaded machine does not abort its work.
  const leaseMarginMs = Math.floor(leaseMs / 10);
  let timer: NodeJS.Timeout | undefined;
  let heartbeat: NodeJS.Timeout | undefined;
  let pumping: Promise<void> | null = null;
  let pumpAgain = false;
  let started = false;
  /** When the renewal under way started; null when none is. */
  let renewalStartedAt: number | null = null;
  let stopped = false;
  let stopping: Promise<void> | undefined;

  function pump(): Promise<void> {
    if (!started || stopped) return Promise.resolve();
    if (pumping) {
      pumpAgain = true;
      return pumping;
    }
    // Cleared in a promise reaction, so always after the assignment below, even when the
    // pass itself ends without awaiting anything (every slot busy).
    const pass = claimAndSleep().finally(() => {
      pumping = null;
      if (pumpAgain) void pump();
    });
    pumping = pass;
    return pass;
  }

  async function claimAndSleep(): Promise<void> {
    try {
      do {
        pumpAgain = false;
        const free = concurrency - running.size;
        // A finished job pumps again, so a full house needs no timer.
        if (free <= 0) return;
        const now = clock.now();
        const jobs = await claimDueFetchJobs(db, { now, limit: free, workerId, leaseMs, running: [...running.keys()] });
        for (const job of jobs) startJob(job, now + leaseMs);
        if (jobs.length === free) pumpAgain = true;
      } while (pumpAgain && !stopped);
      await sleepUntilNextJob();
    } catch (caught) {
      logger.error({ err: coerceError(caught) }, '[WaVoIP Jobs] Could not claim due jobs; trying again in 1s');
      // Wake-ups meanwhile must not turn a broken database into a busy loop: the timer decides.
      pumpAgain = false;
      armTimer(1_000);
    }
  }

  async function sleepUntilNextJob(): Promise<void> {
    const now = clock.now();
    const nextRunAt = await findNextFetchJobRunAt(db, now);
    // Waking at least once per lease also picks up jobs whose holder died.
    armTimer(nextRunAt === null ? leaseMs : Math.min(Math.max(nextRunAt - now, 0), leaseMs));
  }

  function armTimer(delayMs: number): void {
    clearTimeout(timer);
    if (!stopped) timer = setTimeout(() => void pump(), delayMs);
  }

  function startJob(job: FetchJob, leaseValidUntil: number): void {
    const entry: RunningJob = { callId: job.callId, promise: Promise.resolve(), abort: new AbortController(), leaseValidUntil };
    entry.promise = deps
      .runJob(job, entry.abort.signal)
      .catch((caught: unknown) => {
        logger.error({ call_id: job.callId, err: coerceError(caught) }, `[WaVoIP Jobs] Fetch job for call ${job.callId} crashed`);
      })
      .finally(() => {
        clearTimeout(entry.watchdog);
        running.delete(job.callId);
        void pump();
      });
    running.set(job.callId, entry);
    watchLease(entry);
  }

  /**
   * Stops a job whose lease is about to run out with no renewal through: renewals failing, or
   * hanging on a database that stopped answering. The check waits for setImmediate, after the
   * event loop has read what sockets brought, so that a renewal already answered is counted.
   */
  function watchLease(entry: RunningJob): void {
    entry.watchdog = setTimeout(
      () =>
        setImmediate(() => {
          if (entry.abort.signal.aborted || running.get(entry.callId) !== entry) return;
          if (clock.now() < entry.leaseValidUntil - leaseMarginMs) watchLease(entry);
          else entry.abort.abort(new Error('its lease could not be renewed'));
        }),
      Math.max(entry.leaseValidUntil - leaseMarginMs - clock.now(), 0),
    );
  }

  /**
   * A job whose lease this worker no longer holds (taken over after it ran out, or the job was
   * deleted and made again by an event) may be running elsewhere by now: stop it here, so that
   * a recording is not downloaded twice.
   */
  async function renewLeases(): Promise<void> {
    const startedAt = clock.now();
    // One renewal at a time; one that has not come back within a lease is given up on.
    if (renewalStartedAt !== null && startedAt - renewalStartedAt < leaseMs) return;
    renewalStartedAt = startedAt;
    const jobs = [...running.values()];
    const lockedUntil = startedAt + leaseMs;
    try {
      const held = await renewFetchJobLeases(db, workerId, jobs.map((job) => job.callId), lockedUntil);
      for (const job of jobs) {
        // Ended meanwhile, perhaps claimed again for the same call: that claim's lease stands.
        if (running.get(job.callId) !== job) continue;
        if (held.has(job.callId)) job.leaseValidUntil = Math.max(job.leaseValidUntil, lockedUntil);
        else job.abort.abort(new Error('its lease is gone: taken over, or the job was made again'));
      }
    } catch (caught) {
      logger.warn({ err: coerceError(caught) }, '[WaVoIP Jobs] Could not renew job leases');
    } finally {
      if (renewalStartedAt === startedAt) renewalStartedAt = null;
    }
  }

  return {
    start(): void {
      if (started) return;
      started = true;
      heartbeat = setInterval(() => void renewLeases(), renewEveryMs);
      void pump();
    },
    /** New work may be due now: look at once instead of waiting for the timer. */
    wake(): void {
      void pump();
    },
    /**
     * Stops claiming, lets the jobs running finish for up to `graceMs` (a rolling restart then
     * fetches nothing twice), aborts those still running after it (each releases its job, which
     * runs again: on another replica, or here after restart) and waits for them.
     */
    stop({ graceMs = 0 }: { graceMs?: number } = {}): Promise<void> {
      stopping ??= (async () => {
        stopped = true;
        await pumping;
        clearTimeout(timer);
        const inFlight = running.size;
        const grace = `${graceMs / 1000}s`;
        logger.info(
          inFlight === 0
            ? 'Shutting down: stopped claiming jobs; no downloads in flight'
            : `Shutting down: stopped claiming jobs; waiting for ${downloads(inFlight)} in flight to finish (at most ${grace})`,
        );
        // Leases are renewed meanwhile, and until every aborted job has released its own (an S3 abort can take a while).
        if (inFlight > 0 && graceMs > 0) {
          let graceTimer: NodeJS.Timeout | undefined;
          await Promise.race([
            Promise.all([...running.values()].map(({ promise }) => promise)),
            new Promise((resolve) => (graceTimer = setTimeout(resolve, graceMs))),
          ]);
          clearTimeout(graceTimer);
        }
        const late = [...running.values()];
        if (late.length > 0) {
          const [them, theirJobsRun] = late.length === 1 ? ['it', 'its job runs'] : ['them', 'their jobs run'];
          logger.warn(`Shutting down: ${downloads(late.length)} still running after ${grace}; stopping ${them} (${theirJobsRun} again later)`);
          for (const { abort } of late) abort.abort(new Error('shutting down'));
        } else if (inFlight > 0) {
          logger.info('Shutting down: every download in flight finished');
        }
        await Promise.all(late.map(({ promise }) => promise));
        clearInterval(heartbeat);
      })();
      return stopping;
    },
  };
}

function downloads(count: number): string {
  return `${count} download${count === 1 ? '' : 's'}`;
}

export type FetchScheduler = ReturnType<typeof createFetchScheduler>;
