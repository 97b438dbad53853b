import { applyCallEvent, type CallRecord } from '../calls/call-state.ts';
import { planFetch, type FetchPlan, type PollTimings } from '../calls/fetch-plan.ts';
import { normalizeWebhookPayload, type WebhookEvent } from '../calls/webhook-event.ts';
import type { Clock } from '../clock.ts';
import { findCall, saveCall } from '../db/calls-repository.ts';
import { isDatabaseError, type Db, type DbOrTrx } from '../db/database.ts';
import { upsertDevice } from '../db/devices-repository.ts';
import { listUnprocessedEvents, markEventProcessed, markEventsProcessed, type StoredEvent } from '../db/events-repository.ts';
import { deleteFetchJob, scheduleFetchJob } from '../db/fetch-jobs-repository.ts';
import { coerceError } from '../errors.ts';
import { redactUrl, type Logger } from '../log/logger.ts';

/**
 * Events per transaction. Each batch runs on the event loop without a break (the SQLite driver
 * is synchronous), so it is kept small enough not to hold webhook answers back, and the loop
 * gets a turn between batches.
 */
const BATCH_SIZE = 25;
const RETRY_DELAY_MS = 1_000;

interface Outcome {
  event: WebhookEvent;
  previous: CallRecord | null;
  next: CallRecord | null;
  plan: FetchPlan;
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
}) {
  const { db, clock, logger } = deps;
  let running: Promise<void> | null = null;
  let wakeAgain = false;
  let stopped = false;
  let retryTimer: NodeJS.Timeout | undefined;

  /** Applies a batch in one transaction: one commit for up to BATCH_SIZE events. */
  async function applyEvents(batch: StoredEvent[]): Promise<Outcome[]> {
    return db.transaction().execute(async (trx) => {
      const outcomes: Outcome[] = [];
      const invalid: { seq: number; error: string }[] = [];
      for (const stored of batch) {
        const result = await applyEvent(trx, stored);
        if ('error' in result) invalid.push({ seq: stored.seq, error: result.error });
        else outcomes.push(result);
      }
      const invalidSeqs = new Set(invalid.map(({ seq }) => seq));
      await markEventsProcessed(trx, batch.filter((stored) => !invalidSeqs.has(stored.seq)).map((stored) => stored.seq), clock.now());
      for (const { seq, error } of invalid) await markEventProcessed(trx, seq, clock.now(), error);
      return outcomes;
    });
  }

  async function applyEvent(trx: DbOrTrx, stored: StoredEvent): Promise<Outcome | { error: string }> {
    const normalized = normalizeWebhookPayload(JSON.parse(stored.payload));
    const now = clock.now();
    if (!normalized.ok) return { error: normalized.error };
    const { event } = normalized;
    let outcome: Outcome = { event, previous: null, next: null, plan: { action: 'keep' } };
    if (event.type === 'DEVICE' && event.deviceId !== null) {
      await upsertDevice(trx, { deviceId: event.deviceId, phone: event.phone, status: event.status, seenAt: stored.receivedAt });
    } else if (event.type === 'CALL' || event.type === 'RECORD') {
      const previous = await findCall(trx, event.callId);
      const next = applyCallEvent(previous, event, stored.receivedAt);
      await saveCall(trx, next);
      const plan = planFetch(previous, next, now, deps.timings);
      if (plan.action === 'fetch-now' || plan.action === 'poll') {
        await scheduleFetchJob(trx, next.callId, plan.runAt, plan.deadlineAt);
      } else if (plan.action === 'cancel') {
        await deleteFetchJob(trx, next.callId);
      }
      outcome = { event, previous, next, plan };
    }
    return outcome;
  }

  /**
   * When a batch fails, one event at a time, so that one event that cannot be applied does not
   * block the rest. A database error is not the event's fault: it propagates, and the whole
   * batch is tried again later; nothing is marked processed.
   */
  async function applyEventsOneByOne(batch: StoredEvent[], batchError: unknown): Promise<Outcome[]> {
    if (isDatabaseError(batchError)) throw batchError;
    const outcomes: Outcome[] = [];
    for (const stored of batch) {
      try {
        outcomes.push(...(await applyEvents([stored])));
      } catch (caught) {
        if (isDatabaseError(caught)) throw caught;
        const error = coerceError(caught);
        logger.error({ event_id: stored.eventId, err: error }, `[WaVoIP Webhook] Could not apply event ${stored.eventId}; kept with the error`);
        await markEventProcessed(db, stored.seq, clock.now(), error.message);
      }
    }
    return outcomes;
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
      const batch = await listUnprocessedEvents(db, BATCH_SIZE);
      if (batch.length === 0) return;
      const outcomes = await applyEvents(batch).catch((error: unknown) => applyEventsOneByOne(batch, error));
      for (const outcome of outcomes) logOutcome(outcome);
      if (outcomes.some((outcome) => outcome.plan.action === 'fetch-now' || outcome.plan.action === 'poll')) {
        deps.onFetchScheduled();
      }
      if (batch.length < BATCH_SIZE) return;
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
    wake,
    idle,
    async stop(): Promise<void> {
      stopped = true;
      clearTimeout(retryTimer);
      await idle();
    },
  };
}

export type EventProcessor = ReturnType<typeof createEventProcessor>;
