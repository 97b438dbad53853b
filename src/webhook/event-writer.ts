import type { Db, WalSync } from '../db/database.ts';
import { insertEvents, type NewEvent } from '../db/events-repository.ts';

/** SQLite allows 32,766 bound values per statement; six per event leaves ample room. */
const MAX_BATCH = 1_000;

interface Pending {
  event: NewEvent;
  resolve: () => void;
  reject: (error: unknown) => void;
}

/**
 * Group commit for webhook intake. Every request still gets its answer only after its event
 * is committed and synced to disk, but the events that arrive while a sync is under way (or in
 * the same turn of the event loop) share the next commit and sync: one fsync for many webhooks
 * instead of one each, and none of them on the event loop.
 * Hand-written because it is a few lines around our own insert, and no queue library commits
 * a caller's batch and then answers each of its callers.
 */
export function createEventWriter(db: Db, walSync: WalSync) {
  const queue: Pending[] = [];
  let flushing = false;

  async function flush(): Promise<void> {
    while (queue.length > 0) {
      const batch = queue.splice(0, MAX_BATCH);
      try {
        walSync.assertHealthy();
        await insertEvents(
          db,
          batch.map((pending) => pending.event),
        );
        await walSync.sync();
        for (const pending of batch) pending.resolve();
      } catch (error) {
        for (const pending of batch) pending.reject(error);
      }
    }
    flushing = false;
  }

  return {
    /** Resolves once the event is committed; rejects if the commit failed. */
    append(event: NewEvent): Promise<void> {
      return new Promise<void>((resolve, reject) => {
        queue.push({ event, resolve, reject });
        if (flushing) return;
        flushing = true;
        // After the other requests already read in this turn of the event loop, so they join the batch.
        setImmediate(() => void flush());
      });
    },
  };
}

export type EventWriter = ReturnType<typeof createEventWriter>;
