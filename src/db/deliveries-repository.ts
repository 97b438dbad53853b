import { randomInt, randomUUID } from 'node:crypto';
import { sql, type Selectable } from 'kysely';
import type { DeliveryKind, PlannedDelivery } from '../calls/delivery-plan.ts';
import type { Db, DbOrTrx } from './database.ts';
import { isPostgres } from './dialect.ts';
import type { DeliveriesTable } from './schema.ts';

export const DELIVERY_STATES = ['pending', 'delivered', 'given_up', 'cancelled'] as const;
type DeliveryState = (typeof DELIVERY_STATES)[number];

export interface Delivery {
  id: string;
  callId: string;
  destination: string;
  kind: DeliveryKind;
  /** What is told, unique per call and destination: the kind, or `<kind>@<delivery id>` for an operator's redelivery. */
  fact: string;
  reason: string | null;
  position: number;
  serialKey: string | null;
  state: DeliveryState;
  attempts: number;
  runAt: number;
  deadlineAt: number;
  lastError: string | null;
  /** An earlier attempt may have reached the destination without its answer coming back. */
  outcomeUnknown: boolean;
  createdAt: number;
  deliveredAt: number | null;
  externalIds: Record<string, unknown> | null;
  /** Claimed as the probe of a blocked destination: a success unblocks it. */
  probe?: boolean;
  /** The claim this attempt holds: its worker and the version it set. */
  leasedBy: string | null;
  version: number;
}

/** Where the deliveries of a call go, and how each destination keys the ones that must not overlap. */
export interface DeliveryTarget {
  destination: string;
  serialKey: string | null;
}

/**
 * Adds deliveries for a call to the outbox, in the caller's transaction (the one that changed the
 * call, holding its row). Each planned fact is created once per destination: one already there
 * (an event applied again, a backfill run twice) is skipped by the unique (call, destination,
 * fact) key. `redelivery` makes new facts of the same kinds instead. Returns how many were added.
 */
export async function addDeliveries(
  db: DbOrTrx,
  input: { callId: string; planned: PlannedDelivery[]; targets: DeliveryTarget[]; now: number; maxWaitMs: number; redelivery?: boolean },
): Promise<number> {
  if (input.planned.length === 0 || input.targets.length === 0) return 0;
  const positions = await db
    .selectFrom('deliveries')
    .select(['destination', sql<number>`max(position)`.as('last')])
    .where('call_id', '=', input.callId)
    .groupBy('destination')
    .execute();
  const last = new Map(positions.map((row) => [row.destination, Number(row.last)]));
  let added = 0;
  for (const target of input.targets) {
    let position = last.get(target.destination) ?? 0;
    for (const planned of input.planned) {
      position += 1;
      const id = randomUUID();
      const result = await db
        .insertInto('deliveries')
        .values({
          id,
          call_id: input.callId,
          destination: target.destination,
          kind: planned.kind,
          fact: input.redelivery ? `${planned.kind}@${id}` : planned.kind,
          reason: planned.reason,
          position,
          serial_key: target.serialKey,
          state: 'pending',
          attempts: 0,
          outcome_unknown: 0,
          version: 0,
          run_at: input.now,
          deadline_at: input.now + input.maxWaitMs,
          created_at: input.now,
        })
        .onConflict((conflict) => conflict.columns(['call_id', 'destination', 'fact']).doNothing())
        .executeTakeFirst();
      added += Number(result.numInsertedOrUpdatedRows ?? 0n);
    }
  }
  return added;
}

/** A constant the fleet agrees on: claims take turns, so a serial key is never leased twice. */
const CLAIM_LOCK_ID = 0x77_61_76_64;

/**
 * Leases up to `limit` due deliveries to `workerId`, oldest first, of the destinations in
 * `destinations` (the ones this replica knows; blocked and disabled ones left out by the caller).
 * A delivery waits while an earlier one of its call and destination is still pending, and while
 * another delivery with its serial key is leased. Claims take turns across replicas (an advisory
 * lock on PostgreSQL, the one writer on SQLite), so two replicas never lease one serial key.
 */
export async function claimDueDeliveries(
  db: Db,
  input: { now: number; limit: number; workerId: string; leaseMs: number; destinations: string[]; running: string[] },
): Promise<Delivery[]> {
  if (input.destinations.length === 0 || input.limit <= 0) return [];
  return db.transaction().execute(async (trx) => {
    if (isPostgres(trx)) await sql`select pg_advisory_xact_lock(${CLAIM_LOCK_ID})`.execute(trx);
    const candidates = await selectDueDeliveries(trx, input.now, input.destinations, input.limit * 4, input.running).execute();
    if (candidates.length === 0) return [];
    const keys = [...new Set(candidates.flatMap((row) => (row.serial_key === null ? [] : [row.serial_key])))];
    const busy = new Set(
      keys.length === 0
        ? []
        : (
            await trx
              .selectFrom('deliveries')
              .select('serial_key')
              .where('state', '=', 'pending')
              .where('serial_key', 'in', keys)
              .where('locked_until', '>', input.now)
              .execute()
          ).map((row) => row.serial_key),
    );
    const picked: Selectable<DeliveriesTable>[] = [];
    for (const row of candidates) {
      if (picked.length === input.limit) break;
      if (row.serial_key !== null) {
        if (busy.has(row.serial_key)) continue;
        busy.add(row.serial_key);
      }
      picked.push(row);
    }
    const claimed: Delivery[] = [];
    for (const row of picked) {
      const version = randomInt(2 ** 47);
      await trx
        .updateTable('deliveries')
        .set({ locked_until: input.now + input.leaseMs, locked_by: input.workerId, version })
        .where('id', '=', row.id)
        .execute();
      // Still locked by someone: that holder died mid-attempt, and its post may have arrived.
      claimed.push({ ...toDelivery(row), outcomeUnknown: row.outcome_unknown === 1 || row.locked_by !== null, leasedBy: input.workerId, version });
    }
    return claimed;
  });
}

/** The claim's query, exported so a test can check its plan. */
function selectDueDeliveries(db: DbOrTrx, now: number, destinations: string[], limit: number, running: string[] = []) {
  return db
    .selectFrom('deliveries as d')
    .selectAll()
    .where('d.state', '=', 'pending')
    .where('d.run_at', '<=', now)
    .where((eb) => eb.or([eb('d.locked_until', 'is', null), eb('d.locked_until', '<=', now)]))
    .where('d.destination', 'in', destinations)
    .$if(running.length > 0, (query) => query.where('d.id', 'not in', running))
    .where(({ not, exists, selectFrom }) =>
      not(
        exists(
          selectFrom('deliveries as e')
            .select(sql`1`.as('one'))
            .whereRef('e.call_id', '=', 'd.call_id')
            .whereRef('e.destination', '=', 'd.destination')
            .whereRef('e.position', '<', 'd.position')
            .where('e.state', '=', 'pending'),
        ),
      ),
    )
    .orderBy('d.run_at')
    .limit(limit);
}

/** When the scheduler next has something to do: a delivery falling due later, or a lease running out. */
export async function findNextDeliveryWake(db: DbOrTrx, now: number, destinations: string[]): Promise<number | null> {
  if (destinations.length === 0) return null;
  const row = await db
    .selectFrom('deliveries')
    .select([
      sql<number | null>`min(case when run_at > ${now} and (locked_until is null or locked_until <= ${now}) then run_at end)`.as('next_run'),
      sql<number | null>`min(case when locked_until > ${now} then locked_until end)`.as('next_expiry'),
    ])
    .where('state', '=', 'pending')
    .where('destination', 'in', destinations)
    .executeTakeFirstOrThrow();
  const times = [row.next_run, row.next_expiry].filter((time): time is number => time !== null).map(Number);
  return times.length === 0 ? null : Math.min(...times);
}

export async function renewDeliveryLeases(db: DbOrTrx, workerId: string, ids: string[], lockedUntil: number): Promise<Set<string>> {
  if (ids.length === 0) return new Set();
  const rows = await db
    .updateTable('deliveries')
    .set({ locked_until: sql<number>`case when locked_until > ${lockedUntil} then locked_until else ${lockedUntil} end` })
    .where('locked_by', '=', workerId)
    .where('id', 'in', ids)
    .returning('id')
    .execute();
  return new Set(rows.map((row) => row.id));
}

/** An update of this attempt's delivery, only while its claim still stands. */
function whileClaimed(db: DbOrTrx, delivery: Delivery) {
  return db.updateTable('deliveries').where('id', '=', delivery.id).where('locked_by', '=', delivery.leasedBy).where('version', '=', delivery.version);
}

const unlocked = { locked_until: null, locked_by: null } as const;

/** False when the claim was lost meanwhile (the lease ran out and another worker took it). */
export async function markDelivered(db: DbOrTrx, delivery: Delivery, input: { now: number; externalIds: Record<string, unknown> }): Promise<boolean> {
  const result = await whileClaimed(db, delivery)
    .set({ ...unlocked, state: 'delivered', delivered_at: input.now, attempts: delivery.attempts + 1, outcome_unknown: 0, external_ids: JSON.stringify(input.externalIds) })
    .executeTakeFirst();
  return result.numUpdatedRows > 0n;
}

export async function rescheduleDelivery(db: DbOrTrx, delivery: Delivery, input: { runAt: number; lastError: string; outcomeUnknown: boolean }): Promise<void> {
  await whileClaimed(db, delivery)
    .set({ ...unlocked, run_at: input.runAt, attempts: delivery.attempts + 1, last_error: input.lastError, outcome_unknown: input.outcomeUnknown ? 1 : 0 })
    .execute();
}

export async function giveUpDelivery(db: DbOrTrx, delivery: Delivery, reason: string): Promise<void> {
  await whileClaimed(db, delivery).set({ ...unlocked, state: 'given_up', attempts: delivery.attempts + 1, last_error: reason }).execute();
}

/** Lets go without counting an attempt: shutting down, or the destination is blocked. */
export async function releaseDelivery(db: DbOrTrx, delivery: Delivery, input: { lastError?: string; outcomeUnknown?: boolean } = {}): Promise<void> {
  await whileClaimed(db, delivery)
    .set({
      ...unlocked,
      ...(input.lastError === undefined ? {} : { last_error: input.lastError }),
      ...(input.outcomeUnknown ? { outcome_unknown: 1 } : {}),
    })
    .execute();
}

/** A destination's receiver is gone (410): what is still waiting for it will never go. */
export async function cancelPendingDeliveries(db: DbOrTrx, destination: string, reason: string): Promise<number> {
  const result = await db
    .updateTable('deliveries')
    .set({ ...unlocked, state: 'cancelled', last_error: reason })
    .where('destination', '=', destination)
    .where('state', '=', 'pending')
    .executeTakeFirst();
  return Number(result.numUpdatedRows);
}

export async function listCallDeliveries(db: DbOrTrx, callId: string): Promise<Delivery[]> {
  const rows = await db.selectFrom('deliveries').selectAll().where('call_id', '=', callId).orderBy('destination').orderBy('position').execute();
  return rows.map(toDelivery);
}

/** For the metrics: per destination, deliveries waiting, and the run_at of the one due longest. */
export async function summariseDeliveries(db: DbOrTrx, now: number): Promise<{ destination: string; waiting: number; oldestDueAt: number | null }[]> {
  const rows = await db
    .selectFrom('deliveries')
    .select([
      'destination',
      sql<number>`count(*)`.as('waiting'),
      sql<number | null>`min(case when run_at <= ${now} then run_at end)`.as('oldest'),
    ])
    .where('state', '=', 'pending')
    .groupBy('destination')
    .execute();
  return rows.map((row) => ({ destination: row.destination, waiting: Number(row.waiting), oldestDueAt: row.oldest === null ? null : Number(row.oldest) }));
}

function toDelivery(row: Selectable<DeliveriesTable>): Delivery {
  return {
    id: row.id,
    callId: row.call_id,
    destination: row.destination,
    kind: row.kind as DeliveryKind,
    fact: row.fact,
    reason: row.reason,
    position: row.position,
    serialKey: row.serial_key,
    state: row.state as DeliveryState,
    attempts: row.attempts,
    runAt: row.run_at,
    deadlineAt: row.deadline_at,
    lastError: row.last_error,
    outcomeUnknown: row.outcome_unknown === 1,
    createdAt: row.created_at,
    deliveredAt: row.delivered_at,
    externalIds: row.external_ids === null ? null : (JSON.parse(row.external_ids) as Record<string, unknown>),
    leasedBy: row.locked_by,
    version: row.version,
  };
}
