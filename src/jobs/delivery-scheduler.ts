import type { Clock } from '../clock.ts';
import type { Db } from '../db/database.ts';
import { claimDueDeliveries, findNextDeliveryWake, renewDeliveryLeases, type Delivery } from '../db/deliveries-repository.ts';
import { listDestinationStates, takeProbe } from '../db/destination-states-repository.ts';
import type { Logger } from '../log/logger.ts';
import { createLeasedWorker } from './leased-worker.ts';

export type DeliveryRunner = (delivery: Delivery, signal: AbortSignal) => Promise<void>;

/** A blocked destination is tried with one delivery this often, so that fixing its settings is enough. */
export const BLOCKED_PROBE_INTERVAL_MS = 60_000;

/**
 * Runs due deliveries, at most `concurrency` at a time, leased in the database like fetch jobs
 * (see leased-worker.ts): no fixed tick, woken by new work, by a finished delivery (its successor
 * may be due) and by other replicas; a lease is renewed while a delivery runs, and a delivery
 * whose lease could not be renewed is stopped before it may be taken over. Blocked destinations
 * get one probe a minute; disabled ones nothing.
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
  const { db, leaseMs, workerId } = deps;
  /** When the next probe of a blocked destination is due, as the last claim found it. */
  let nextProbeAt: number | null = null;

  async function claim(now: number, limit: number, running: string[]): Promise<Delivery[]> {
    const { open, probes, probeAt } = await destinationsToClaim(now);
    nextProbeAt = probeAt;
    const claimed: Delivery[] = [];
    for (const destination of probes) {
      if (claimed.length >= limit) break;
      const probe = await claimDueDeliveries(db, { now, limit: 1, workerId, leaseMs, destinations: [destination], running });
      claimed.push(...probe.map((delivery) => ({ ...delivery, probe: true })));
    }
    claimed.push(...(await claimDueDeliveries(db, { now, limit: limit - claimed.length, workerId, leaseMs, destinations: open, running })));
    return claimed;
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

  async function nextWakeAt(now: number): Promise<number | null> {
    const next = [await findNextDeliveryWake(db, now, deps.destinations), nextProbeAt].filter((time): time is number => time !== null);
    return next.length === 0 ? null : Math.min(...next);
  }

  const worker = createLeasedWorker<Delivery>({
    clock: deps.clock,
    logger: deps.logger,
    concurrency: deps.concurrency,
    leaseMs,
    idOf: (delivery) => delivery.id,
    claim,
    nextWakeAt,
    renew: (ids, lockedUntil) => renewDeliveryLeases(db, workerId, ids, lockedUntil),
    run: deps.runDelivery,
    messages: {
      claimFailed: '[Deliveries] Could not claim due deliveries; trying again in 1s',
      renewFailed: '[Deliveries] Could not renew delivery leases',
      leaseGone: 'its lease is gone: taken over',
      crashed: (delivery) => ({ context: { call_id: delivery.callId, delivery_id: delivery.id }, msg: `[Deliveries] Delivery ${delivery.id} crashed` }),
    },
    describe: {
      claimed: 'deliveries',
      item: 'delivery',
      items: 'deliveries',
      afterAbort: (count) => (count === 1 ? 'it is sent again later' : 'they are sent again later'),
    },
  });
  return {
    ...worker,
    /** With no destination configured there is nothing to claim, ever. */
    start(): void {
      if (deps.destinations.length > 0) worker.start();
    },
  };
}
