import { applyCallEvent, type CallRecord } from '../calls/call-state.ts';
import { planFetch, type FetchPlan, type PollTimings } from '../calls/fetch-plan.ts';
import { normalizeWebhookPayload, type WebhookEvent } from '../calls/webhook-event.ts';
import type { Clock } from '../clock.ts';
import { findCall, saveCall, setCallTenant } from '../db/calls-repository.ts';
import { isDatabaseError, type Db, type DbOrTrx } from '../db/database.ts';
import { findDevicePhone, upsertDevice } from '../db/devices-repository.ts';
import { listUnprocessedEvents, lockEventProcessing, markEventProcessed, markEventsProcessed, type StoredEvent } from '../db/events-repository.ts';
import { deleteFetchJob, scheduleFetchJob } from '../db/fetch-jobs-repository.ts';
import type { DeliveryOutbox } from '../delivery/outbox.ts';
import { normalizeDeviceStatus } from '../devices/device-status.ts';
import { coerceError } from '../errors.ts';
import { redactUrl, type Logger } from '../log/logger.ts';

/**
 * Events per transaction. Each batch runs on the event loop without a break (the SQLite driver
 * is synchronous), so it is kept small enough not to hold webhook answers back, and the loop
 * gets a turn between batches.
 */
const BATCH_SIZE = 25;
const RETRY_DELAY_MS = 1_000;
/**
 * Events are normally applied by the process that took them, at once. This scan picks up those
 * a replica acknowledged but died before applying (its peers share the database).
 */
const SWEEP_INTERVAL_MS = 5_000;

interface Outcome {
  event: WebhookEvent;
  previous: CallRecord | null;
  next: CallRecord | null;
  plan: FetchPlan;
  /** Deliveries the change added to the outbox. */
  deliveries: number;
}

/**
 * Applies stored webhook events to calls, devices and fetch jobs, oldest first. Intake only
 * stores events; this runs after the answer, and again at start-up for anything a crash
 * left unprocessed.
 */
export function createEventProcessor(deps: {
  db: Db;
  clock: Clock;
  logger: Logger;
  timings: PollTimings;
  onFetchScheduled: () => void;
  /** Replicas share the database: look for events a dead one acknowledged but never applied. */
  sweep: boolean;
  /** Deliveries the call changes cause, written in the same transaction. */
  outbox?: DeliveryOutbox;
  onDeliveriesAdded?: () => void;
  /** After commit: the calls the events changed (for the live list). */
  onCallsChanged?: (callIds: string[]) => void;
}) {
  const { db, clock, logger } = deps;
  let running: Promise<void> | null = null;
  let wakeAgain = false;
  let stopped = false;
  let retryTimer: NodeJS.Timeout | undefined;
  let sweepTimer: NodeJS.Timeout | undefined;

  /**
   * Applies the oldest unprocessed events, up to BATCH_SIZE, in one transaction: one commit for
   * all of them. Listed inside the transaction, after taking the processing lock, so that
   * replicas sharing a PostgreSQL database never apply the same event at the same time.
   */
  async function applyNextEvents(): Promise<{ batch: StoredEvent[]; outcomes: Outcome[] }> {
    return db.transaction().execute(async (trx) => {
      await lockEventProcessing(trx);
      const batch = await listUnprocessedEvents(trx, BATCH_SIZE);
      const outcomes: Outcome[] = [];
      const invalid: { seq: number; error: string }[] = [];
      for (const stored of batch) {
        const result = await applyEvent(trx, stored).catch((caught: unknown) => {
          throw isDatabaseError(caught) ? caught : new EventNotApplied(stored, caught);
        });
        if ('error' in result) invalid.push({ seq: stored.seq, error: result.error });
        else outcomes.push(result);
      }
      const invalidSeqs = new Set(invalid.map(({ seq }) => seq));
      await markEventsProcessed(trx, batch.filter((stored) => !invalidSeqs.has(stored.seq)).map((stored) => stored.seq), clock.now());
      for (const { seq, error } of invalid) await markEventProcessed(trx, seq, clock.now(), error);
      return { batch, outcomes };
    });
  }

  async function applyEvent(trx: DbOrTrx, stored: StoredEvent): Promise<Outcome | { error: string }> {
    const normalized = normalizeWebhookPayload(JSON.parse(stored.payload, withoutNul));
    const now = clock.now();
    if (!normalized.ok) return { error: normalized.error };
    const { event } = normalized;
    let outcome: Outcome = { event, previous: null, next: null, plan: { action: 'keep' }, deliveries: 0 };
    if (event.type === 'DEVICE' && event.deviceId !== null) {
      const report = { phone: event.phone, status: event.status, normalizedStatus: normalizeDeviceStatus(event.status) };
      if (!(await upsertDevice(trx, { deviceId: event.deviceId, seenAt: stored.receivedAt, tenant: stored.tenant, report }))) {
        return refuse(stored, `device ${event.deviceId} belongs to another device group; not changed by a webhook with the token of ${stored.tenant}`);
      }
    } else if (event.type === 'CALL' || event.type === 'RECORD') {
      // Locked until commit: a download attaching meanwhile waits, rather than being overwritten.
      const previous = await findCall(trx, event.callId, { forUpdate: true });
      // A group's token touches only the calls it brought (the operator's WEBHOOK_TOKEN, any):
      // one customer's token must not change another's calls, nor claim calls already known.
      if (stored.tenant !== null && previous !== null && previous.tenant !== stored.tenant) {
        const owner = previous.tenant === null ? 'no device group' : `device group ${previous.tenant}`;
        return refuse(stored, `call ${event.callId} belongs to ${owner}; not changed by a webhook with the token of ${stored.tenant}`);
      }
      const tenant = previous?.tenant ?? stored.tenant;
      // Our own number, for calls whose payloads leave it out: once known, kept by the merge.
      const deviceId = event.deviceId ?? previous?.deviceId ?? null;
      const devicePhone = deviceId !== null && previous?.deviceReportedPhone == null ? await findDevicePhone(trx, deviceId, tenant) : null;
      const next = applyCallEvent(previous, event, stored.receivedAt, devicePhone);
      await saveCall(trx, next);
      if (previous === null && tenant !== null) await setCallTenant(trx, next.callId, tenant);
      // CALL and RECORD events name their device too: it was heard from.
      if (event.deviceId !== null) await upsertDevice(trx, { deviceId: event.deviceId, seenAt: stored.receivedAt, tenant: stored.tenant });
      const deliveries = (await deps.outbox?.record(trx, previous, next, now)) ?? 0;
      const plan = planFetch(previous, next, now, deps.timings);
      if (plan.action === 'fetch-now' || plan.action === 'poll') {
        await scheduleFetchJob(trx, next.callId, plan);
      } else if (plan.action === 'cancel') {
        await deleteFetchJob(trx, next.callId);
      }
      outcome = { event, previous, next, plan, deliveries };
    }
    return outcome;
  }

  function refuse(stored: StoredEvent, error: string): { error: string } {
    logger.warn({ event_id: stored.eventId, tenant: stored.tenant }, `[WaVoIP Webhook] Event ${stored.eventId} kept unapplied: ${error}`);
    return { error };
  }

  function logOutcome({ event, previous, next, plan }: Outcome): void {
    if (next === null || event.type === 'DEVICE' || event.type === 'UNKNOWN') return;
    const callId = next.callId;
    if (next.recordStatus !== previous?.recordStatus && next.recordStatus === 'READY') {
      logger.info(
        { call_id: callId, record_url: next.recordUrl === null ? null : redactUrl(next.recordUrl) },
        `[WaVoIP Webhook] Recording READY for call ${callId}`,
      );
    }
    if (next.attachment.state !== previous?.attachment.state) {
      const messages: Partial<Record<string, string>> = {
        empty: 'no recording will come: the call was too short (EMPTY_RECORDING)',
        disabled: 'no recording will come: recording is disabled on the device (DISABLED)',
        none: 'no recording expected: the call ended without connecting',
      };
      const message = messages[next.attachment.state];
      if (message) logger.info({ call_id: callId }, `[WaVoIP Webhook] Call ${callId}: ${message}`);
    }
    if (plan.action === 'poll') {
      logger.info(
        { call_id: callId, first_poll_at: new Date(plan.runAt).toISOString(), give_up_at: new Date(plan.deadlineAt).toISOString() },
        `[WaVoIP Poll] Waiting for the recording of call ${callId}`,
      );
    }
  }

  async function drain(): Promise<void> {
    while (!stopped) {
      let applied: { batch: StoredEvent[]; outcomes: Outcome[] };
      try {
        applied = await applyNextEvents();
      } catch (caught) {
        // A database error is not the event's fault: it propagates, and the batch is tried
        // again later. An event that cannot be applied is kept with its error, and the rest go on.
        if (!(caught instanceof EventNotApplied)) throw caught;
        const { stored, cause } = caught;
        logger.error({ event_id: stored.eventId, err: cause }, `[WaVoIP Webhook] Could not apply event ${stored.eventId}; kept with the error`);
        await markEventProcessed(db, stored.seq, clock.now(), cause.message);
        continue;
      }
      for (const outcome of applied.outcomes) logOutcome(outcome);
      const changed = applied.outcomes.flatMap((outcome) => (outcome.next === null ? [] : [outcome.next.callId]));
      if (changed.length > 0) deps.onCallsChanged?.(changed);
      if (applied.outcomes.some((outcome) => outcome.plan.action === 'fetch-now' || outcome.plan.action === 'poll')) {
        deps.onFetchScheduled();
      }
      if (applied.outcomes.some((outcome) => outcome.deliveries > 0)) deps.onDeliveriesAdded?.();
      if (applied.batch.length < BATCH_SIZE) return;
      await new Promise((resolve) => setImmediate(resolve));
    }
  }

  /**
   * Processes whatever is stored and unprocessed; safe to call as often as events arrive.
   * After a failure it waits for its retry timer: new webhooks must not turn a broken
   * database into a busy loop.
   */
  function wake(): void {
    if (stopped || retryTimer !== undefined) return;
    if (running) {
      wakeAgain = true;
      return;
    }
    wakeAgain = false;
    running = drain()
      .catch((caught: unknown) => {
        logger.error({ err: coerceError(caught) }, '[WaVoIP Webhook] Event processing failed; retrying in 1s');
        if (stopped) return;
        retryTimer = setTimeout(() => {
          retryTimer = undefined;
          wake();
        }, RETRY_DELAY_MS);
      })
      .finally(() => {
        running = null;
        if (wakeAgain) wake();
      });
  }

  /** Resolves once no processing is in flight. */
  async function idle(): Promise<void> {
    while (running) await running;
  }

  return {
    /** Applies what earlier runs left unprocessed, then (replicas) keeps sweeping for stray events. */
    start(): void {
      wake();
      if (!deps.sweep) return;
      sweepTimer = setInterval(wake, SWEEP_INTERVAL_MS);
      sweepTimer.unref();
    },
    wake,
    idle,
    async stop(): Promise<void> {
      stopped = true;
      clearInterval(sweepTimer);
      clearTimeout(retryTimer);
      await idle();
    },
  };
}

export type EventProcessor = ReturnType<typeof createEventProcessor>;

/**
 * A PostgreSQL text value cannot hold U+0000 (SQLite's can): one `\u0000` in a caller, a status or
 * a record_url made every write of the event's facts fail as a database error, retried for ever
 * and holding back every event after it. Such a character becomes U+FFFD, on both databases, as
 * invalid UTF-8 in a body already does. (A call id with a control character is refused at intake.)
 */
function withoutNul(_key: string, value: unknown): unknown {
  return typeof value === 'string' && value.includes('\u0000') ? value.replaceAll('\u0000', '\uFFFD') : value;
}

/** An event whose application failed for a reason of its own (not the database's). */
class EventNotApplied extends Error {
  override readonly cause: Error;
  constructor(
    readonly stored: StoredEvent,
    cause: unknown,
  ) {
    const error = coerceError(cause);
    super(error.message);
    this.cause = error;
  }
}
