import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { applyCallEvent } from '../../src/calls/call-state.ts';
import { systemClock } from '../../src/clock.ts';
import { loadConfig } from '../../src/config/config.ts';
import { saveCall } from '../../src/db/calls-repository.ts';
import { createDb, migrateToLatest, type Db } from '../../src/db/database.ts';
import { addDeliveries, claimDueDeliveries, findNextDeliveryWake, renewDeliveryLeases, type Delivery } from '../../src/db/deliveries-repository.ts';
import { createDeliveryScheduler } from '../../src/jobs/delivery-scheduler.ts';
import { createLeasedWorker } from '../../src/jobs/leased-worker.ts';
import { captureLog } from '../support/captured-log.ts';
import { makeDataDir } from '../support/service-harness.ts';

/**
 * Deliveries run on the same leased loop as downloads, against a real SQLite file with time moved
 * by hand: a renewal that never comes back does not hold up the later ones, and a stop lets the
 * deliveries in flight finish within the grace.
 */
const LEASE_MS = 3_000;
const DESTINATION = 'webhook:a';
const WORKER_ID = 'this-replica';

let db: Db;
const log = captureLog('info');
const { logger } = log;

beforeEach(async () => {
  db = createDb(loadConfig({ DATA_DIR: await makeDataDir() }).database);
  await migrateToLatest(db);
  log.lines.length = 0;
  vi.useFakeTimers({ toFake: ['Date', 'setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'setImmediate'] });
});
afterEach(async () => {
  vi.useRealTimers();
  await db.destroy();
});

async function addCallEnded(callId: string): Promise<void> {
  await saveCall(db, applyCallEvent(null, { type: 'RECORD', callId, recordStatus: 'RECORDING', recordUrl: null, deviceId: null }, Date.now()));
  await addDeliveries(db, {
    callId,
    planned: [{ kind: 'call', reason: null }],
    targets: [{ destination: DESTINATION, serialKey: null }],
    now: Date.now(),
    maxWaitMs: 3_600_000,
    redelivery: false,
  });
}

type Run = { callId: string; startedAt: number; finishedAt?: number; abortedAt?: number; reason?: string };

/** A delivery that takes `durationMs[callId]` to finish (for ever when absent), or until aborted. */
function deliver(runs: Run[], durationMs: Record<string, number> = {}) {
  return (delivery: Delivery, signal: AbortSignal) =>
    new Promise<void>((resolve) => {
      const run: Run = { callId: delivery.callId, startedAt: Date.now() };
      runs.push(run);
      const duration = durationMs[delivery.callId];
      const timer = duration === undefined ? undefined : setTimeout(() => ((run.finishedAt = Date.now()), resolve()), duration);
      signal.addEventListener('abort', () => {
        clearTimeout(timer);
        run.abortedAt = Date.now();
        run.reason = (signal.reason as Error).message;
        resolve();
      });
    });
}

describe('lease renewal', () => {
  it('gives up on a renewal that has not come back within a lease, so that the next one goes', async () => {
    await addCallEnded('HUNG');
    const runs: Run[] = [];
    let renewals = 0;
    // SQLite has one connection, so a statement held up there holds up every later one too: the
    // connection that stopped answering (as a PostgreSQL one behind a dead network path can) is
    // the first renewal here, which never settles; the later ones go to the database.
    const worker = createLeasedWorker<Delivery>({
      clock: systemClock,
      logger,
      concurrency: 1,
      leaseMs: LEASE_MS,
      idOf: (delivery) => delivery.id,
      claim: (now, limit, running) => claimDueDeliveries(db, { now, limit, workerId: WORKER_ID, leaseMs: LEASE_MS, destinations: [DESTINATION], running }),
      nextWakeAt: (now) => findNextDeliveryWake(db, now, [DESTINATION]),
      renew: (ids, lockedUntil) => (renewals++ === 0 ? new Promise<Set<string>>(() => {}) : renewDeliveryLeases(db, WORKER_ID, ids, lockedUntil)),
      run: deliver(runs),
      messages: {
        claimFailed: 'could not claim',
        renewFailed: 'could not renew',
        leaseGone: 'its lease is gone',
        crashed: () => ({ context: {}, msg: 'crashed' }),
      },
      describe: { claimed: 'deliveries', item: 'delivery', items: 'deliveries', afterAbort: () => 'sent again later' },
    });
    worker.start();
    await vi.advanceTimersByTimeAsync(LEASE_MS);
    expect(runs[0]!.reason).toBe('its lease could not be renewed');

    // Claimed again once its lease has run out, and kept from then on by the renewals that go.
    await vi.advanceTimersByTimeAsync(LEASE_MS);
    expect(runs).toHaveLength(2);
    await vi.advanceTimersByTimeAsync(10 * LEASE_MS);
    expect(runs[1]!.abortedAt).toBeUndefined();
    await worker.stop();
    expect(runs[1]!.reason).toBe('shutting down');
  });
});

describe('stop', () => {
  function startScheduler(runs: Run[], durationMs: Record<string, number>) {
    const scheduler = createDeliveryScheduler({
      db,
      clock: systemClock,
      logger,
      workerId: WORKER_ID,
      concurrency: 2,
      leaseMs: LEASE_MS,
      destinations: [DESTINATION],
      runDelivery: deliver(runs, durationMs),
    });
    scheduler.start();
    return scheduler;
  }

  it('claims nothing more, lets the deliveries in flight finish within the grace, and aborts those still running after it', async () => {
    const GRACE_MS = 5 * LEASE_MS;
    await addCallEnded('QUICK');
    await addCallEnded('ENDLESS');
    const runs: Run[] = [];
    const scheduler = startScheduler(runs, { QUICK: 2 * LEASE_MS });
    await vi.advanceTimersByTimeAsync(1);
    expect(runs.map((run) => run.callId).sort()).toEqual(['ENDLESS', 'QUICK']);

    const stopAt = Date.now();
    const stopping = scheduler.stop({ graceMs: GRACE_MS });
    await addCallEnded('AFTER-STOP');
    scheduler.wake();
    // Longer than a lease: the leases of the deliveries still running are renewed meanwhile.
    await vi.advanceTimersByTimeAsync(2 * LEASE_MS);
    const quick = runs.find((run) => run.callId === 'QUICK')!;
    expect(quick.finishedAt).toBe(quick.startedAt + 2 * LEASE_MS);
    expect(quick.abortedAt).toBeUndefined();
    expect(runs.find((run) => run.callId === 'ENDLESS')!.abortedAt).toBeUndefined();

    await vi.advanceTimersByTimeAsync(GRACE_MS);
    expect(runs.find((run) => run.callId === 'ENDLESS')).toMatchObject({ abortedAt: stopAt + GRACE_MS, reason: 'shutting down' });
    await stopping;
    expect(runs.map((run) => run.callId)).not.toContain('AFTER-STOP');
    expect(log.messages()).toContain('Shutting down: stopped claiming deliveries; waiting for 2 deliveries in flight to finish (at most 15s)');
    expect(log.messages()).toContain('Shutting down: 1 delivery still running after 15s; stopping it (it is sent again later)');
  });

  it('ends as soon as the deliveries in flight have finished, without waiting out the grace', async () => {
    await addCallEnded('QUICK');
    const runs: Run[] = [];
    const scheduler = startScheduler(runs, { QUICK: LEASE_MS });
    await vi.advanceTimersByTimeAsync(1);
    let stoppedAt: number | undefined;
    const stopping = scheduler.stop({ graceMs: 100 * LEASE_MS }).then(() => (stoppedAt = Date.now()));
    await vi.advanceTimersByTimeAsync(LEASE_MS);
    await stopping;
    expect(runs[0]!.abortedAt).toBeUndefined();
    expect(stoppedAt).toBe(runs[0]!.finishedAt);
    expect(log.messages()).toContain('Shutting down: every delivery in flight finished');
  });
});
