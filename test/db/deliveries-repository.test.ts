import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { applyCallEvent } from '../../src/calls/call-state.ts';
import type { PlannedDelivery } from '../../src/calls/delivery-plan.ts';
import { loadConfig } from '../../src/config/config.ts';
import { saveCall } from '../../src/db/calls-repository.ts';
import { createDb, migrateToLatest, type Db } from '../../src/db/database.ts';
import {
  addDeliveries,
  claimDueDeliveries,
  findNextDeliveryWake,
  giveUpDelivery,
  listCallDeliveries,
  markDelivered,
  releaseDelivery,
  renewDeliveryLeases,
  rescheduleDelivery,
  type DeliveryTarget,
} from '../../src/db/deliveries-repository.ts';
import { makeDataDir } from '../support/service-harness.ts';
import { databaseEnvironment, ensureDatabase, testDialect } from '../support/test-database.ts';

let db: Db;
let env: Record<string, string>;

beforeEach(async () => {
  env = { DATA_DIR: await makeDataDir(), ...databaseEnvironment() };
  await ensureDatabase(env);
  db = createDb(loadConfig(env).database);
  await migrateToLatest(db);
});
afterEach(async () => {
  await db.destroy();
});

const CALL: PlannedDelivery = { kind: 'call', reason: null };
const RECORDING: PlannedDelivery = { kind: 'recording', reason: null };
const hook: DeliveryTarget = { destination: 'webhook:a', serialKey: null };

async function addCall(callId: string): Promise<void> {
  await saveCall(db, applyCallEvent(null, { type: 'RECORD', callId, recordStatus: 'RECORDING', recordUrl: null, deviceId: null }, 0));
}

async function add(callId: string, planned: PlannedDelivery[], targets: DeliveryTarget[] = [hook], now = 1_000, redelivery = false): Promise<number> {
  return addDeliveries(db, { callId, planned, targets, now, maxWaitMs: 100_000, redelivery });
}

const claim = (now: number, limit: number, workerId = 'w1', running: string[] = []) =>
  claimDueDeliveries(db, { now, limit, workerId, leaseMs: 1_000, destinations: ['webhook:a', 'chatwoot'], running });

describe(`the delivery outbox in ${testDialect === 'sqlite' ? 'SQLite' : 'PostgreSQL'}`, () => {
  it('keeps each fact once per call and destination; a redelivery adds new ones', async () => {
    await addCall('c1');
    expect(await add('c1', [CALL, RECORDING])).toBe(2);
    expect(await add('c1', [CALL])).toBe(0);
    expect(await add('c1', [CALL], [hook], 2_000, true)).toBe(1);
    const rows = await listCallDeliveries(db, 'c1');
    expect(rows.map((row) => [row.kind, row.position, row.state])).toEqual([
      ['call', 1, 'pending'],
      ['recording', 2, 'pending'],
      ['call', 3, 'pending'],
    ]);
  });

  it('claims a delivery only once every earlier one of its call and destination is settled', async () => {
    await addCall('c1');
    await add('c1', [CALL, RECORDING]);
    const [first, ...rest] = await claim(1_000, 10);
    expect(first?.kind).toBe('call');
    expect(rest).toEqual([]);
    // Its lease running out does not let the recording overtake it.
    expect((await claim(5_000, 10, 'w2')).map((delivery) => delivery.kind)).toEqual(['call']);
    const [again] = await listCallDeliveries(db, 'c1');
    expect(again?.leasedBy).toBe('w2');
  });

  it('the recording goes once the call is delivered, or given up', async () => {
    for (const callId of ['c1', 'c2']) {
      await addCall(callId);
      await add(callId, [CALL, RECORDING]);
    }
    const [one, two] = await claim(1_000, 10);
    expect(await markDelivered(db, one!, { now: 1_100, externalIds: { webhook_id: one!.id } })).toBe(true);
    await giveUpDelivery(db, two!, 'refused');
    expect((await claim(1_200, 10)).map((delivery) => [delivery.callId, delivery.kind])).toEqual([
      ['c1', 'recording'],
      ['c2', 'recording'],
    ]);
  });

  it('never leases two deliveries with the same serial key at once, across calls and workers', async () => {
    const contact: DeliveryTarget = { destination: 'chatwoot', serialKey: 'chatwoot:+5511987654321' };
    for (const callId of ['c1', 'c2', 'c3']) {
      await addCall(callId);
      await add(callId, [CALL], [contact]);
    }
    const first = await claim(1_000, 10, 'w1');
    expect(first).toHaveLength(1);
    expect(await claim(1_000, 10, 'w2')).toEqual([]);
    await markDelivered(db, first[0]!, { now: 1_100, externalIds: {} });
    expect(await claim(1_200, 10, 'w2')).toHaveLength(1);
  });

  it('on concurrent claims, each delivery and each serial key is leased once', async () => {
    for (let index = 0; index < 40; index += 1) {
      await addCall(`c${index}`);
      await add(`c${index}`, [CALL], [{ destination: 'chatwoot', serialKey: `key-${index % 10}` }]);
    }
    const claims = await Promise.all(['w1', 'w2', 'w3', 'w4'].map((worker) => claim(1_000, 10, worker)));
    const all = claims.flat();
    expect(new Set(all.map((delivery) => delivery.id)).size).toBe(all.length);
    expect(new Set(all.map((delivery) => delivery.serialKey)).size).toBe(all.length);
    expect(all).toHaveLength(10);
  });

  it('a claim after a holder died tells the next attempt the outcome is unknown; a retry keeps the id', async () => {
    await addCall('c1');
    await add('c1', [CALL]);
    const [first] = await claim(1_000, 1, 'w1');
    expect(first?.outcomeUnknown).toBe(false);
    const [taken] = await claim(2_001, 1, 'w2');
    expect([taken?.id, taken?.outcomeUnknown]).toEqual([first?.id, true]);
    // The first holder's late answer changes nothing: the claim is the second's now.
    expect(await markDelivered(db, first!, { now: 2_100, externalIds: {} })).toBe(false);
    expect(await renewDeliveryLeases(db, 'w1', [first!.id], 9_000)).toEqual(new Set());
    await rescheduleDelivery(db, taken!, { runAt: 5_000, lastError: 'HTTP 500', outcomeUnknown: false });
    const [row] = await listCallDeliveries(db, 'c1');
    expect(row).toMatchObject({ state: 'pending', attempts: 1, runAt: 5_000, lastError: 'HTTP 500', outcomeUnknown: false, leasedBy: null });
    expect(await findNextDeliveryWake(db, 3_000, ['webhook:a'])).toBe(5_000);
    expect(await claim(4_000, 1)).toEqual([]);
    const [retried] = await claim(5_000, 1);
    expect(retried?.id).toBe(first?.id);
    await releaseDelivery(db, retried!, { outcomeUnknown: true });
    expect((await claim(5_000, 1))[0]?.outcomeUnknown).toBe(true);
  });
});
