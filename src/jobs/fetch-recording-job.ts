import type { CallRecord } from '../calls/call-state.ts';
import { describeGiveUp, scheduleRetry, type PollTimings } from '../calls/fetch-plan.ts';
import { buildRecordingUrl, recordingUrlForAttempt } from '../calls/recording.ts';
import type { Clock } from '../clock.ts';
import { attachRecording, failAttachment, findCall, type StoredCall } from '../db/calls-repository.ts';
import type { Db, DbOrTrx } from '../db/database.ts';
import { deleteFetchJob, releaseFetchJob, rescheduleFetchJob, type FetchJob } from '../db/fetch-jobs-repository.ts';
import { downloadRecording } from '../download/download-recording.ts';
import type { DeliveryOutbox } from '../delivery/outbox.ts';
import type { HttpClient } from '../download/http-client.ts';
import { checkRecordingUrl, type AllowlistEntry } from '../download/url-guard.ts';
import { AppError, coerceError } from '../errors.ts';
import { redactUrl, type Logger } from '../log/logger.ts';
import type { FetchOutcome, Metrics } from '../metrics/metrics.ts';
import { recordingKeyFor } from '../storage/recording-store.ts';
import type { RecordingStore } from '../storage/recording-store.ts';
import { formatWait } from '../units.ts';
import type { FetchJobRunner } from './fetch-scheduler.ts';

interface FetchRecordingDeps {
  db: Db;
  store: RecordingStore;
  client: HttpClient;
  clock: Clock;
  random: () => number;
  logger: Logger;
  metrics: Pick<Metrics, 'fetches' | 'downloadedBytes' | 'downloadDuration'>;
  timings: PollTimings;
  allowlist: AllowlistEntry[];
  maxBytes: number;
  urlTemplate: string;
  /** A released job is due again at once: tells the other replicas, which may be idle. */
  announceRelease: () => void;
  /** Deliveries an attached or failed recording causes, written in the same transaction. */
  outbox?: DeliveryOutbox;
  onDeliveriesAdded?: () => void;
  /** After commit: the call's attachment, or its job's attempts, changed (for the live list). */
  onCallChanged?: (callId: string) => void;
}

/**
 * One attempt at a call's recording: download, verify, store, attach. A READY call is a
 * download; a call still waiting for READY is a poll of the same URL. A `record_url` sent
 * without READY is a hint, tried in turn with the template URL. Transient failures are
 * rescheduled on the retry schedule until the deadline; the rest fail the attachment, unless
 * another URL is still in turn.
 */
export function createFetchRecordingJob(deps: FetchRecordingDeps): FetchJobRunner {
  const { db, clock, logger, metrics } = deps;

  return async function fetchRecording(job: FetchJob, signal: AbortSignal): Promise<void> {
    const call = await findCall(db, job.callId);
    if (call === null || call.attachment.state !== 'pending') {
      // Nothing to fetch any more; a job an event made again meanwhile keeps its run.
      if (!(await deleteFetchJob(db, job.callId, job))) await releaseFetchJob(db, job);
      return;
    }
    const attempt = job.attempts + 1;
    const choice = recordingUrlForAttempt({
      recordUrl: call.recordUrl,
      hintedUrl: call.hintedUrl,
      templateUrl: buildRecordingUrl(deps.urlTemplate, call.callId),
      hintAllowed: call.hintedUrl !== null && isAllowed(call.hintedUrl),
      attempt,
    });
    const url = choice.url;
    const polling = call.recordStatus !== 'READY';
    const mode = polling ? ('poll' as const) : ('download' as const);
    const context = { call_id: call.callId, url: redactUrl(url), attempt, mode, ...(choice.hinted ? { hinted: true } : {}) };
    const count = (outcome: FetchOutcome) => metrics.fetches.inc({ mode, outcome });
    const startedAt = performance.now();
    logger.info(
      context,
      polling
        ? `[WaVoIP Poll] Checking for the recording of call ${call.callId}${choice.hinted ? ' at the URL its webhook hinted' : ''} (attempt ${attempt})`
        : `[WaVoIP Recording Webhook] Downloading recording for call ${call.callId} (attempt ${attempt})`,
    );

    try {
      await deps.store.prepareTemp();
      const file = await downloadRecording({
        url,
        allowlist: deps.allowlist,
        client: deps.client,
        maxBytes: deps.maxBytes,
        tmpDir: deps.store.tmpDir,
        storageHeadroomBytes: deps.store.tmpHeadroomBytes,
        signal,
      });
      const key = recordingKeyFor(call.callId, file.sha256, file.extension);
      try {
        await deps.store.put(file.tempPath, key, signal);
      } finally {
        // Gone after a successful put; after a failed one, never left behind. Never throws, so
        // read-only storage cannot hide the put's own reason behind a failed delete.
        await deps.store.discardTemp(file.tempPath);
      }
      const { size, sha256, contentType, container, codec, durationSeconds } = file;
      const recording = { key, size, sha256, contentType, container, codec, durationSeconds, attachedAt: clock.now() };
      let deliveries = 0;
      const attached = await db.transaction().execute(async (trx) => {
        // The call's row first, as the event processor takes them: the other order can deadlock.
        const before = await findCall(trx, call.callId, { forUpdate: true });
        const recorded = await attachRecording(trx, call.callId, recording);
        await deleteFetchJob(trx, call.callId);
        if (recorded && before !== null) deliveries = await recordDeliveries(trx, before, { ...before, attachment: { state: 'attached', reason: null } });
        return recorded;
      });
      if (deliveries > 0) deps.onDeliveriesAdded?.();
      count(attached ? 'attached' : 'superseded');
      if (attached) {
        deps.onCallChanged?.(call.callId);
        metrics.downloadedBytes.inc(file.size);
        metrics.downloadDuration.observe({ mode }, (performance.now() - startedAt) / 1000);
        logger.info(
          { ...context, size: file.size, sha256: file.sha256, content_type: file.contentType, duration_seconds: file.durationSeconds, key, final_url: redactUrl(file.finalUrl) },
          '[WaVoIP Recording Webhook] ✅ Recording attached successfully',
        );
      } else {
        await removeUnattachedFile(call.callId, key);
      }
    } catch (caught) {
      count(await handleFailure(call, job, signal, caught, context, choice.alternating));
    }
  };

  /** The allow-list alone, without DNS: a hint it refuses is never tried, rather than failing the call. */
  function isAllowed(url: string): boolean {
    try {
      checkRecordingUrl(url, deps.allowlist);
      return true;
    } catch {
      return false;
    }
  }

  function recordDeliveries(trx: DbOrTrx, before: CallRecord, after: CallRecord): Promise<number> {
    return deps.outbox?.record(trx, before, after, clock.now()) ?? Promise.resolve(0);
  }

  /** Another attempt attached first: keep its file, drop ours unless it is the very same one. */
  async function removeUnattachedFile(callId: string, key: string): Promise<void> {
    const current = await findCall(db, callId);
    if (current?.recording?.key !== key) await deps.store.remove(key);
  }

  async function handleFailure(
    call: StoredCall,
    job: FetchJob,
    signal: AbortSignal,
    caught: unknown,
    context: { mode: 'poll' | 'download' } & Record<string, unknown>,
    alternating: boolean,
  ): Promise<FetchOutcome> {
    if (signal.aborted) {
      // Shutting down, or the lease was lost: the attempt does not count, and the job runs again.
      const why = signal.reason instanceof Error ? signal.reason.message : 'shutting down';
      logger.info(context, `[WaVoIP Jobs] Fetch for call ${call.callId} interrupted (${why}); it will run again`);
      await releaseFetchJob(db, job).then(
        () => deps.announceRelease(),
        // Its lease runs out instead: the job still runs again, only later.
        (releaseError: unknown) =>
          logger.warn({ ...context, err: coerceError(releaseError) }, `[WaVoIP Jobs] Could not release the job of call ${call.callId}; it runs again once its lease runs out`),
      );
      return 'interrupted';
    }
    const error = caught instanceof AppError ? caught : new AppError(coerceError(caught).message, { code: 'UNEXPECTED', retryable: true, cause: caught });
    const reason = error.message;
    const now = clock.now();
    // With two URLs in turn, one that fails for good (not audio, say) leaves the other its chance;
    // our own storage failing is no fault of either URL.
    const retryable = error.retryable || (alternating && !error.code.startsWith('STORAGE'));
    const nextRunAt = retryable
      ? scheduleRetry({
          failedAttempts: job.attempts + 1,
          now,
          deadlineAt: job.deadlineAt,
          retryAfterMs: error.retryAfterMs,
          random: deps.random,
          timings: deps.timings,
        })
      : null;

    if (nextRunAt !== null) {
      await rescheduleFetchJob(db, job, { runAt: nextRunAt, action: context.mode === 'download' ? 'fetch-now' : 'poll', lastError: reason });
      deps.onCallChanged?.(call.callId);
      const retryIn = formatWait(nextRunAt - now);
      // Only a 404 is the recording not published yet; anything else is something to look at.
      const notYet = error.code === 'NOT_FOUND';
      logger[notYet ? 'info' : 'warn'](
        { ...context, reason, code: error.code, next_attempt_at: new Date(nextRunAt).toISOString() },
        context.mode === 'download'
          ? `[WaVoIP Recording Webhook] Download for call ${call.callId} failed (${reason}); retrying in ${retryIn}`
          : notYet
            ? `[WaVoIP Poll] Recording for call ${call.callId} not available yet (${reason}); next poll in ${retryIn}`
            : `[WaVoIP Poll] Could not check for the recording of call ${call.callId} (${reason}); next poll in ${retryIn}`,
      );
      return 'retry';
    }

    const finalReason = retryable
      ? describeGiveUp(deps.timings, reason, error.code.startsWith('STORAGE') ? 'storage' : 'upstream')
      : reason;
    let deliveries = 0;
    const failed = await db.transaction().execute(async (trx) => {
      // The call's row first, as the event processor takes them: the other order can deadlock.
      const before = await findCall(trx, call.callId, { forUpdate: true });
      // An event that rescheduled the job meanwhile (say, READY with a new URL) gets its chance.
      if (!(await deleteFetchJob(trx, call.callId, job))) return false;
      const changed = await failAttachment(trx, call.callId, finalReason);
      if (changed && before !== null) deliveries = await recordDeliveries(trx, before, { ...before, attachment: { state: 'failed', reason: finalReason } });
      return changed;
    });
    if (deliveries > 0) deps.onDeliveriesAdded?.();
    if (failed) {
      deps.onCallChanged?.(call.callId);
      logger.error({ ...context, reason: finalReason, code: error.code }, `[WaVoIP Recording Webhook] ❌ Recording failed for call ${call.callId}: ${finalReason}`);
      return 'failed';
    }
    await releaseFetchJob(db, job);
    return 'superseded';
  }
}
