import type { Clock } from '../clock.ts';
import { coerceError } from '../errors.ts';
import type { Logger } from '../log/logger.ts';

interface Running {
  id: string;
  promise: Promise<void>;
  abort: AbortController;
  /** The locked_until this worker last wrote for the item, at its claim or at a renewal. */
  leaseValidUntil: number;
  watchdog?: NodeJS.Timeout;
}

interface LeasedWorkerOptions<Item> {
  clock: Clock;
  logger: Logger;
  concurrency: number;
  leaseMs: number;
  idOf(item: Item): string;
  /** Leases up to `limit` items due at `now` (until `now + leaseMs`), none of `running`. */
  claim(now: number, limit: number, running: string[]): Promise<Item[]>;
  /** When something may next be due, or null when nothing is scheduled. */
  nextWakeAt(now: number): Promise<number | null>;
  /** Extends this worker's leases of `ids` to `lockedUntil`; answers the ids it still held. */
  renew(ids: string[], lockedUntil: number): Promise<Set<string>>;
  run(item: Item, signal: AbortSignal): Promise<void>;
  messages: {
    claimFailed: string;
    renewFailed: string;
    /** Why an item whose lease this worker no longer holds is aborted. */
    leaseGone: string;
    crashed(item: Item): { context: Record<string, unknown>; msg: string };
  };
  /** Words for the shutdown lines: "stopped claiming jobs; waiting for 2 downloads in flight…". */
  describe: {
    claimed: string;
    item: string;
    items: string;
    /** What becomes of `count` items aborted at shutdown: 'its job runs again later'. */
    afterAbort(count: number): string;
  };
}

/**
 * Runs due leased work, at most `concurrency` items at a time. There is no fixed tick: it sleeps
 * until the next item is due, and `wake()` (new work scheduled now) or a finished item sends it
 * looking again at once. Every item is leased in the database, so a process that dies mid-way
 * loses the lease after `leaseMs` and the item runs again; the lease is renewed while the item
 * runs, and an item whose lease could not be renewed is stopped before it may be taken over.
 */
export function createLeasedWorker<Item>(options: LeasedWorkerOptions<Item>) {
  const { clock, logger, concurrency, leaseMs, messages, describe } = options;
  const count = (n: number) => `${n} ${n === 1 ? describe.item : describe.items}`;
  const running = new Map<string, Running>();
  const renewEveryMs = Math.max(Math.floor(leaseMs / 3), 100);
  // An item still running when its lease runs out may be taken over by another replica: it is
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
        // A finished item pumps again, so a full house needs no timer.
        if (free <= 0) return;
        const now = clock.now();
        const items = await options.claim(now, free, [...running.keys()]);
        for (const item of items) startItem(item, now + leaseMs);
        if (items.length === free) pumpAgain = true;
      } while (pumpAgain && !stopped);
      await sleepUntilNextItem();
    } catch (caught) {
      logger.error({ err: coerceError(caught) }, messages.claimFailed);
      // Wake-ups meanwhile must not turn a broken database into a busy loop: the timer decides.
      pumpAgain = false;
      armTimer(1_000);
    }
  }

  async function sleepUntilNextItem(): Promise<void> {
    const now = clock.now();
    const nextAt = await options.nextWakeAt(now);
    // Waking at least once per lease also picks up items whose holder died.
    armTimer(nextAt === null ? leaseMs : Math.min(Math.max(nextAt - now, 0), leaseMs));
  }

  function armTimer(delayMs: number): void {
    clearTimeout(timer);
    if (!stopped) timer = setTimeout(() => void pump(), delayMs);
  }

  function startItem(item: Item, leaseValidUntil: number): void {
    const id = options.idOf(item);
    const entry: Running = { id, promise: Promise.resolve(), abort: new AbortController(), leaseValidUntil };
    entry.promise = options
      .run(item, entry.abort.signal)
      .catch((caught: unknown) => {
        const { context, msg } = messages.crashed(item);
        logger.error({ ...context, err: coerceError(caught) }, msg);
      })
      .finally(() => {
        clearTimeout(entry.watchdog);
        running.delete(id);
        void pump();
      });
    running.set(id, entry);
    watchLease(entry);
  }

  /**
   * Stops an item whose lease is about to run out with no renewal through: renewals failing, or
   * hanging on a database that stopped answering. The check waits for setImmediate, after the
   * event loop has read what sockets brought, so that a renewal already answered is counted.
   */
  function watchLease(entry: Running): void {
    entry.watchdog = setTimeout(
      () =>
        setImmediate(() => {
          if (entry.abort.signal.aborted || running.get(entry.id) !== entry) return;
          if (clock.now() < entry.leaseValidUntil - leaseMarginMs) watchLease(entry);
          else entry.abort.abort(new Error('its lease could not be renewed'));
        }),
      Math.max(entry.leaseValidUntil - leaseMarginMs - clock.now(), 0),
    );
  }

  /**
   * An item whose lease this worker no longer holds (taken over after it ran out, or made again)
   * may be running elsewhere by now: stop it here, so that the work is not done twice.
   */
  async function renewLeases(): Promise<void> {
    const startedAt = clock.now();
    // One renewal at a time; one that has not come back within a lease is given up on.
    if (renewalStartedAt !== null && startedAt - renewalStartedAt < leaseMs) return;
    renewalStartedAt = startedAt;
    const entries = [...running.values()];
    const lockedUntil = startedAt + leaseMs;
    try {
      const held = await options.renew(entries.map((entry) => entry.id), lockedUntil);
      for (const entry of entries) {
        // Ended meanwhile, perhaps claimed again under the same id: that claim's lease stands.
        if (running.get(entry.id) !== entry) continue;
        if (held.has(entry.id)) entry.leaseValidUntil = Math.max(entry.leaseValidUntil, lockedUntil);
        else entry.abort.abort(new Error(messages.leaseGone));
      }
    } catch (caught) {
      logger.warn({ err: coerceError(caught) }, messages.renewFailed);
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
     * Stops claiming, lets the items running finish for up to `graceMs` (a rolling restart then
     * does nothing twice), aborts those still running after it (each releases its lease, and
     * runs again: on another replica, or here after restart) and waits for them.
     */
    stop({ graceMs = 0 }: { graceMs?: number } = {}): Promise<void> {
      stopping ??= (async () => {
        stopped = true;
        // Never started: nothing ran, and there is nothing to say.
        if (!started) return;
        await pumping;
        clearTimeout(timer);
        const inFlight = running.size;
        const grace = `${graceMs / 1000}s`;
        logger.info(
          inFlight === 0
            ? `Shutting down: stopped claiming ${describe.claimed}; no ${describe.items} in flight`
            : `Shutting down: stopped claiming ${describe.claimed}; waiting for ${count(inFlight)} in flight to finish (at most ${grace})`,
        );
        // Leases are renewed meanwhile, and until every aborted item has released its own (an S3 abort can take a while).
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
          const them = late.length === 1 ? 'it' : 'them';
          logger.warn(`Shutting down: ${count(late.length)} still running after ${grace}; stopping ${them} (${describe.afterAbort(late.length)})`);
          for (const { abort } of late) abort.abort(new Error('shutting down'));
        } else if (inFlight > 0) {
          logger.info(`Shutting down: every ${describe.item} in flight finished`);
        }
        await Promise.all(late.map(({ promise }) => promise));
        clearInterval(heartbeat);
      })();
      return stopping;
    },
  };
}
