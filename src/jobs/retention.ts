import type { Clock } from '../clock.ts';
import type { Db } from '../db/database.ts';
import { pruneDevices } from '../db/devices-repository.ts';
import { pruneProcessedEvents } from '../db/events-repository.ts';
import { coerceError } from '../errors.ts';
import type { Logger } from '../log/logger.ts';

const BATCH = 1_000;
const LONGEST_INTERVAL_MS = 3_600_000;

/**
 * Prunes raw events (DEVICE heartbeats above all) and silent devices older than EVENT_RETENTION,
 * a batch at a time with a turn of the event loop between batches. Calls and their recordings
 * are kept; unprocessed events are never pruned.
 */
export function createRetention(deps: { db: Db; clock: Clock; logger: Logger; retentionMs: number }) {
  const { db, clock, logger, retentionMs } = deps;
  // Often enough that nothing outlives the retention by much; at most hourly.
  const intervalMs = Math.max(1_000, Math.min(LONGEST_INTERVAL_MS, Math.floor(retentionMs / 10)));
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;

  async function prune(): Promise<void> {
    const before = clock.now() - retentionMs;
    let events = 0;
    for (;;) {
      const deleted = await pruneProcessedEvents(db, before, BATCH);
      events += deleted;
      if (deleted < BATCH) break;
      await new Promise((resolve) => setImmediate(resolve));
    }
    const devices = await pruneDevices(db, before);
    if (events > 0 || devices > 0) logger.info({ events, devices }, `[Retention] Pruned ${events} events and ${devices} devices`);
  }

  function run(): void {
    running = prune()
      .catch((caught: unknown) => logger.warn({ err: coerceError(caught) }, '[Retention] Pruning failed; trying again later'))
      .finally(() => {
        running = undefined;
      });
  }

  return {
    start(): void {
      run();
      timer = setInterval(run, intervalMs);
    },
    async stop(): Promise<void> {
      clearInterval(timer);
      await running;
    },
  };
}
