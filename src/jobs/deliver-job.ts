import { scheduleRetry } from '../calls/fetch-plan.ts';
import type { Clock } from '../clock.ts';
import { findCall } from '../db/calls-repository.ts';
import type { Db } from '../db/database.ts';
import {
  cancelPendingDeliveries,
  giveUpDelivery,
  markDelivered,
  releaseDelivery,
  rescheduleDelivery,
  type Delivery,
} from '../db/deliveries-repository.ts';
import { blockDestination, disableDestination, unblockDestination } from '../db/destination-states-repository.ts';
import { asAppError, classifyDeliveryError, DELIVERY_ERROR_CODES, type Destination } from '../delivery/destination.ts';
import type { Logger } from '../log/logger.ts';
import type { DeliveryOutcome, Metrics } from '../metrics/metrics.ts';
import { formatDuration, formatWait } from '../units.ts';
import { BLOCKED_PROBE_INTERVAL_MS, type DeliveryRunner } from './delivery-scheduler.ts';

interface DeliveryTimings {
  /** The first retry's wait; it doubles (±25%) up to `maxDelayMs`. */
  initialDelayMs: number;
  maxDelayMs: number;
  /** DELIVERY_MAX_WAIT: retried until this long after the delivery was made, then given up. */
  maxWaitMs: number;
  /** How soon a blocked destination is probed again; default BLOCKED_PROBE_INTERVAL_MS. */
  probeIntervalMs?: number;
}

export const DEFAULT_DELIVERY_RETRY = { initialDelayMs: 10_000, maxDelayMs: 3_600_000 } as const;

/**
 * One attempt at a delivery: build it from the call as it is now, hand it to its destination, and
 * record how it went. Retryable failures wait on the growing schedule until the deadline; a
 * blocked destination does not use up the delivery's attempts (it waits for the settings to be
 * fixed); a receiver that is gone (410) disables its destination.
 */
export function createDeliverJob(deps: {
  db: Db;
  clock: Clock;
  random: () => number;
  logger: Logger;
  metrics: Pick<Metrics, 'deliveries'>;
  destinations: Map<string, Destination>;
  timings: DeliveryTimings;
  /** Something changed that other replicas may be waiting on (a delivery settled, a destination unblocked). */
  announce: () => void;
  /** A call's deliveries changed (for the live list); `null`: many calls' did. */
  onCallChanged?: (callId: string | null) => void;
}): DeliveryRunner {
  const { db, clock, logger, metrics } = deps;

  return async function deliver(delivery, signal): Promise<void> {
    const destination = deps.destinations.get(delivery.destination);
    const call = await findCall(db, delivery.callId);
    if (destination === undefined || call === null) {
      await releaseDelivery(db, delivery);
      return;
    }
    const context = { call_id: call.callId, delivery_id: delivery.id, destination: destination.name, kind: delivery.kind, attempt: delivery.attempts + 1 };
    const count = (outcome: DeliveryOutcome) => metrics.deliveries.inc({ destination: destination.name, kind: delivery.kind, outcome });
    try {
      const receipt = await destination.deliver(delivery, call, signal);
      const now = clock.now();
      if (!(await markDelivered(db, delivery, { now, externalIds: receipt.externalIds }))) {
        logger.warn(context, `[${destination.logTag}] ${receipt.summary}, but the delivery was taken over meanwhile (it may arrive twice, with the same id)`);
      }
      count('delivered');
      logger.info({ ...context, external_ids: receipt.externalIds }, `[${destination.logTag}] ✅ ${receipt.summary}`);
      if (delivery.probe && (await unblockDestination(db, destination.name))) {
        logger.info({ destination: destination.name }, `[${destination.logTag}] ${destination.name} takes deliveries again; resuming what waited`);
      }
      deps.announce();
      deps.onCallChanged?.(call.callId);
    } catch (caught) {
      await handleFailure(destination, delivery, signal, caught, context, count);
    }
  };

  async function handleFailure(
    destination: Destination,
    delivery: Delivery,
    signal: AbortSignal,
    caught: unknown,
    context: Record<string, unknown>,
    count: (outcome: DeliveryOutcome) => void,
  ): Promise<void> {
    const tag = `[${destination.logTag}]`;
    const error = asAppError(caught);
    if (signal.aborted) {
      const why = signal.reason instanceof Error ? signal.reason.message : 'shutting down';
      // The request may have gone out: the next attempt is told so.
      await releaseDelivery(db, delivery, { outcomeUnknown: true });
      logger.info(context, `${tag} Delivery ${delivery.id} interrupted (${why}); it will run again`);
      count('interrupted');
      deps.announce();
      return;
    }
    const now = clock.now();
    const reason = error.message;
    switch (classifyDeliveryError(error)) {
      case 'blocked': {
        const first = await blockDestination(db, { destination: destination.name, reason, now, nextProbeAt: now + (deps.timings.probeIntervalMs ?? BLOCKED_PROBE_INTERVAL_MS) });
        await releaseDelivery(db, delivery, { lastError: reason });
        deps.onCallChanged?.(delivery.callId);
        count('blocked');
        logger.error(
          { ...context, reason },
          first
            ? `${tag} ❌ ${destination.name} is blocked: ${reason}. Deliveries wait (none is used up) and resume once it accepts one again; tried once a minute`
            : `${tag} ${destination.name} still blocked: ${reason}`,
        );
        return;
      }
      case 'gone': {
        await disableDestination(db, { destination: destination.name, reason, now });
        const cancelled = await cancelPendingDeliveries(db, destination.name, `not sent: ${reason}`);
        deps.onCallChanged?.(null);
        count('gone');
        logger.warn({ ...context, reason, cancelled }, `${tag} ⚠️ ${destination.name} disabled: ${reason}. ${cancelled} waiting deliveries cancelled; remove it from the settings, or once the receiver is fixed POST /api/destinations/reset`);
        return;
      }
      case 'retry': {
        const runAt = scheduleRetry({
          failedAttempts: delivery.attempts,
          now,
          deadlineAt: delivery.deadlineAt,
          retryAfterMs: error.retryAfterMs,
          random: deps.random,
          timings: { pollInitialDelayMs: deps.timings.initialDelayMs, pollMaxDelayMs: deps.timings.maxDelayMs, pollMaxWaitMs: deps.timings.maxWaitMs },
        });
        if (runAt !== null) {
          await rescheduleDelivery(db, delivery, { runAt, lastError: reason, outcomeUnknown: error.code === DELIVERY_ERROR_CODES.answerLost });
          deps.onCallChanged?.(delivery.callId);
          count('retry');
          logger.warn(
            { ...context, reason, code: error.code, next_attempt_at: new Date(runAt).toISOString() },
            `${tag} ${describe(delivery)} to ${destination.name} failed (${reason}); retrying in ${formatWait(runAt - now)}`,
          );
          return;
        }
        const gaveUp = `gave up after ${formatDuration(deps.timings.maxWaitMs)} of retries (last error: ${reason})`;
        await giveUpDelivery(db, delivery, gaveUp);
        deps.onCallChanged?.(delivery.callId);
        count('given_up');
        logger.error({ ...context, reason: gaveUp }, `${tag} ❌ ${describe(delivery)} to ${destination.name} ${gaveUp}`);
        deps.announce();
        return;
      }
      case 'permanent': {
        await giveUpDelivery(db, delivery, reason);
        deps.onCallChanged?.(delivery.callId);
        count('given_up');
        logger.error({ ...context, reason, code: error.code }, `${tag} ❌ ${describe(delivery)} to ${destination.name} refused: ${reason}`);
        deps.announce();
      }
    }
  }
}

function describe(delivery: Delivery): string {
  const what = { call: 'Call', recording: 'Recording', recording_unavailable: 'Recording unavailable notice' }[delivery.kind];
  return `${what} of call ${delivery.callId}`;
}
