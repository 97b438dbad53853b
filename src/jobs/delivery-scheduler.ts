import type { Clock } from '../clock.ts';
import type { Db } from '../db/database.ts';
import { claimDueDeliveries, findNextDeliveryWake, renewDeliveryLeases, type Delivery } from '../db/deliveries-repository.ts';
import { listDestinationStates, takeProbe } from '../db/destination-states-repository.ts';
import { coerceError } from '../errors.ts';
import type { Logger } from '../log/logger.ts';

export type DeliveryRunner = (delivery: Delivery, signal: AbortSignal) => Promise<void>;

/** A blocked destination is tried with one delivery this often, so that fixing its settings is enough. */
export const BLOCKED_PROBE_INTERVAL_MS = 60_000;

interface Running {
  promise: Promise<void>;
  abort: AbortController;
  leaseValidUntil: number;
  watchdog?: NodeJS.Timeout;
}

/**
 * Runs due deliveries, at most `concurrency` at a time, leased in the database like fetch jobs
 * (see fetch-scheduler.ts, whose loop this follows): no fixed tick, woken by new work, by a
 * finished delivery (its successor may be due) and by other replicas; a lease is renewed while
 * a delivery runs, and a delivery whose lease could not be renewed is stopped before it may be
 * taken over. Blocked destinations get one probe a minute; disabled ones nothing.
 */
export function createDeliveryScheduler(deps: {
  db: Db;
  clock: Clock;
  logger: Logger;
  workerId: string;
  concurrency: number;
  leaseMs: number;
  destinations: string[];
  /** How often a blocked destination is probed; default BLOCKED_PROBE_INTERVAL_MS. */
  probeIntervalMs?: number;
  runDelivery: DeliveryRunner;
}) {
  const probeIntervalMs = deps.probeIntervalMs ?? BLOCKED_PROBE_INTERVAL_MS;
  const { db, clock, logger, concurrency, leaseMs, workerId } = deps;
  const running = new Map<string, Running>();
  const renewEveryMs = Math.max(Math.floor(leaseMs / 3), 100);
  const leaseMarginMs = Math.floor(leaseMs / 10);
  let timer: NodeJS.Timeout | undefined;
  let heartbeat: NodeJS.Timeout | undefined;
  let pumping: Promise<void> | null = null;
  let pumpAgain = false;
  let started = false;
  let stopped = false;
  let stopping: Promise<void> | undefined;

  function pump(): Promise<void> {
    if (!started || stopped || deps.destinations.length === 0) return Promise.resolve();
    if (pumping) {
      pumpAgain = true;
      return pumping;
    }
    const pass = claimAndSleep().finally(() => {
      pumping = null;
      if (pumpAgain) void pump();
    });
    pumping = pass;
    return pass;
  }

  async function claimAndSleep(): Promise<void> {
    let nextProbeAt: number | null = null;
    try {
      do {
        pumpAgain = false;
        const free = concurrency - running.size;
        if (free <= 0) return;
        const now = clock.now();
        const { open, probes, probeAt } = await destinationsToClaim(now);
        nextProbeAt = probeAt;
        const claimed: Delivery[] = [];
        for (const destination of probes) {
          if (claimed.length >= free) break;
          claimed.push(...(await claim(now, 1, [destination])).map((delivery) => ({ ...delivery, probe: true })));
        }
        claimed.push(...(await claim(now, free - claimed.length, open)));
        for (const delivery of claimed) start(delivery, now + leaseMs);
        if (claimed.length === free) pumpAgain = true;
      } while (pumpAgain && !stopped);
      const now = clock.now();
      const next = [await findNextDeliveryWake(db, now, deps.destinations), nextProbeAt].filter((time): time is number => time !== null);
      // Waking at least once per lease also picks up deliveries whose holder died.
      armTimer(Math.min(Math.max(Math.min(...next, now + leaseMs) - now, 0), leaseMs));
    } catch (caught) {
      logger.error({ err: coerceError(caught) }, '[Deliveries] Could not claim due deliveries; trying again in 1s');
      pumpAgain = false;
      armTimer(1_000);
    }
  }

  function claim(now: number, limit: number, destinations: string[]): Promise<Delivery[]> {
    return claimDueDeliveries(db, { now, limit, workerId, leaseMs, destinations, running: [...running.keys()] });
  }

  /** Destinations open for claims, the blocked ones whose probe this replica took, and when the next probe is due. */
  async function destinationsToClaim(now: number): Promise<{ open: string[]; probes: string[]; probeAt: number | null }> {
    const states = await listDestinationStates(db);
    const open: string[] = [];
    const probes: string[] = [];
    let probeAt: number | null = null;
    for (const destination of deps.destinations) {
      const state = states.get(destination);
      if (state === undefined) open.push(destination);
      else if (state.state === 'blocked') {
        if ((state.nextProbeAt ?? 0) <= now && (await takeProbe(db, { destination, now, nextProbeAt: now + probeIntervalMs }))) {
          probes.push(destination);
        }
        const next = state.nextProbeAt !== null && state.nextProbeAt > now ? state.nextProbeAt : now + probeIntervalMs;
        probeAt = probeAt === null ? next : Math.min(probeAt, next);
      }
    }
    return { open, probes, probeAt };
  }

  function armTimer(delayMs: number): void {
    clearTimeout(timer);
    if (!stopped) timer = setTimeout(() => void pump(), delayMs);
  }

  function start(delivery: Delivery, leaseValidUntil: number): void {
    const entry: Running = { promise: Promise.resolve(), abort: new AbortController(), leaseValidUntil };
    entry.promise = deps
      .runDelivery(delivery, entry.abort.signal)
      .catch((caught: unknown) => {
        logger.error({ call_id: delivery.callId, delivery_id: delivery.id, err: coerceError(caught) }, `[Deliveries] Delivery ${delivery.id} crashed`);
      })
      .finally(() => {
        clearTimeout(entry.watchdog);
        running.delete(delivery.id);
        void pump();
      });
    running.set(delivery.id, entry);
    watchLease(delivery.id, entry);
  }

  function watchLease(id: string, entry: Running): void {
    entry.watchdog = setTimeout(
      () =>
        setImmediate(() => {
          if (entry.abort.signal.aborted || running.get(id) !== entry) return;
          if (clock.now() < entry.leaseValidUntil - leaseMarginMs) watchLease(id, entry);
          else entry.abort.abort(new Error('its lease could not be renewed'));
        }),
      Math.max(entry.leaseValidUntil - leaseMarginMs - clock.now(), 0),
    );
  }

  let renewing = false;
  async function renewLeases(): Promise<void> {
    if (renewing || running.size === 0) return;
    renewing = true;
    const ids = [...running.keys()];
    const lockedUntil = clock.now() + leaseMs;
    try {
      const held = await renewDeliveryLeases(db, workerId, ids, lockedUntil);
      for (const id of ids) {
        const entry = running.get(id);
        if (entry === undefined) continue;
        if (held.has(id)) entry.leaseValidUntil = Math.max(entry.leaseValidUntil, lockedUntil);
        else entry.abort.abort(new Error('its lease is gone: taken over'));
      }
    } catch (caught) {
      logger.warn({ err: coerceError(caught) }, '[Deliveries] Could not renew delivery leases');
    } finally {
      renewing = false;
    }
  }

  return {
    start(): void {
      if (started) return;
      started = true;
      heartbeat = setInterval(() => void renewLeases(), renewEveryMs);
      void pump();
    },
    /** New deliveries may be due now (or a destination was fixed): look at once. */
    wake(): void {
      void pump();
    },
    /** How many deliveries this replica is running now. */
    runningCount: () => running.size,
    stop(): Promise<void> {
      stopping ??= (async () => {
        stopped = true;
        await pumping;
        clearTimeout(timer);
        for (const { abort } of running.values()) abort.abort(new Error('shutting down'));
        await Promise.all([...running.values()].map(({ promise }) => promise));
        clearInterval(heartbeat);
      })();
      return stopping;
    },
  };
}

export type DeliveryScheduler = ReturnType<typeof createDeliveryScheduler>;
