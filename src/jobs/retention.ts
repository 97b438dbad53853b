import type { Clock } from '../clock.ts';
import { expireRecording, listRecordingsAttachedBefore } from '../db/calls-repository.ts';
import type { Db } from '../db/database.ts';
import { pruneDevices } from '../db/devices-repository.ts';
import { pruneProcessedEvents } from '../db/events-repository.ts';
import type { Logger } from '../log/logger.ts';
import type { RecordingStore } from '../storage/recording-store.ts';
import { formatDuration } from '../units.ts';
import { createPeriodicTask, type PeriodicTask } from './periodic.ts';

const EVENT_BATCH = 1_000;
// Each recording is a file to delete: smaller batches keep a turn of the event loop short.
const RECORDING_BATCH = 100;
const LONGEST_INTERVAL_MS = 3_600_000;

interface RetentionDeps {
  db: Db;
  store: RecordingStore;
  clock: Clock;
  logger: Logger;
  eventRetentionMs: number;
  /** Unset: recordings are never deleted. */
  recordingRetentionMs: number | undefined;
  /** The calls whose recordings expired (for the live list). */
  onCallsChanged?: (callIds: string[]) => void;
}

/**
 * Prunes raw events (DEVICE heartbeats above all) and silent devices older than EVENT_RETENTION,
 * and, only when RECORDING_RETENTION is set, recordings attached longer ago than that, a batch at
 * a time with a turn of the event loop between batches. Unprocessed events are never pruned.
 */
export function createRetention(deps: RetentionDeps): PeriodicTask {
  const { db, store, clock, logger, eventRetentionMs, recordingRetentionMs } = deps;

  async function pruneEvents(signal: AbortSignal): Promise<void> {
    const before = clock.now() - eventRetentionMs;
    let events = 0;
    while (!signal.aborted) {
      const deleted = await pruneProcessedEvents(db, before, EVENT_BATCH);
      events += deleted;
      if (deleted < EVENT_BATCH) break;
      await nextTurn();
    }
    const devices = await pruneDevices(db, before);
    if (events > 0 || devices > 0) logger.info({ events, devices }, `[Retention] Pruned ${events} events and ${devices} devices`);
  }

  async function pruneRecordings(retentionMs: number, signal: AbortSignal): Promise<void> {
    const before = clock.now() - retentionMs;
    const reason = `recording deleted after RECORDING_RETENTION (${formatDuration(retentionMs)})`;
    let recordings = 0;
    while (!signal.aborted) {
      const batch = await listRecordingsAttachedBefore(db, before, RECORDING_BATCH);
      const expired: string[] = [];
      for (const { callId, key } of batch) {
        if (signal.aborted) break;
        // File first: a crash in between leaves a call that is still attached and is expired on
        // the next run, never an expired call whose file lingers.
        await store.remove(key);
        if (await expireRecording(db, callId, key, reason)) expired.push(callId);
      }
      recordings += expired.length;
      if (expired.length > 0) deps.onCallsChanged?.(expired);
      if (batch.length < RECORDING_BATCH) break;
      await nextTurn();
    }
    if (recordings > 0) logger.info({ recordings }, `[Retention] Deleted ${recordings} recordings attached more than ${formatDuration(retentionMs)} ago`);
  }

  // Often enough that nothing outlives its retention by much; at most hourly.
  const shortest = Math.min(eventRetentionMs, recordingRetentionMs ?? Number.POSITIVE_INFINITY);
  const intervalMs = Math.max(1_000, Math.min(LONGEST_INTERVAL_MS, Math.floor(shortest / 10)));
  return createPeriodicTask(
    async (signal) => {
      await pruneEvents(signal);
      if (recordingRetentionMs !== undefined) await pruneRecordings(recordingRetentionMs, signal);
    },
    intervalMs,
    (error) => logger.warn({ err: error }, `[Retention] Pruning failed (${error.message}); trying again later`),
  );
}

const nextTurn = () => new Promise((resolve) => setImmediate(resolve));
