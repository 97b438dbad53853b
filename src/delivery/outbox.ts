import type { CallRecord } from '../calls/call-state.ts';
import { planDeliveries, type PlannedDelivery } from '../calls/delivery-plan.ts';
import { findCall } from '../db/calls-repository.ts';
import type { Db, DbOrTrx } from '../db/database.ts';
import { addDeliveries } from '../db/deliveries-repository.ts';
import { listDestinationStates } from '../db/destination-states-repository.ts';
import type { Destination } from './destination.ts';

/**
 * Where the changes of calls become deliveries: called inside the transaction that changes a call
 * (holding its row), so that a crash can never keep the change and lose its deliveries, or the
 * other way round. With no destination configured it does nothing.
 */
export interface DeliveryOutbox {
  readonly destinations: readonly Destination[];
  /** The deliveries a change of a call causes; returns how many were added. */
  record(trx: DbOrTrx, previous: CallRecord | null, next: CallRecord, now: number): Promise<number>;
  /**
   * An operator's "send it again": new deliveries for every fact the call holds now, to every
   * destination or the one named. Null when the call is unknown.
   */
  redeliver(db: Db, callId: string, now: number, destination?: string): Promise<number | null>;
  /**
   * The deliveries calls first seen since `since` would have had (calls from before a destination
   * was configured); facts already delivered or waiting are skipped, so running it twice adds nothing.
   */
  backfill(db: Db, since: number, now: number): Promise<{ calls: number; deliveries: number }>;
}

const BACKFILL_BATCH = 200;

export function createDeliveryOutbox(destinations: readonly Destination[], maxWaitMs: number): DeliveryOutbox {
  async function add(trx: DbOrTrx, call: CallRecord, planned: PlannedDelivery[], now: number, options: { only?: Destination[]; redelivery?: boolean } = {}): Promise<number> {
    if (planned.length === 0) return 0;
    const states = await listDestinationStates(trx);
    const targets = (options.only ?? destinations)
      .filter((destination) => states.get(destination.name)?.state !== 'disabled')
      .map((destination) => ({ destination: destination.name, serialKey: destination.serialKey(call) }));
    return addDeliveries(trx, { callId: call.callId, planned, targets, now, maxWaitMs, redelivery: options.redelivery });
  }

  return {
    destinations,
    async record(trx, previous, next, now) {
      if (destinations.length === 0) return 0;
      return add(trx, next, planDeliveries(previous, next), now);
    },
    async redeliver(db, callId, now, destination) {
      const only = destination === undefined ? undefined : destinations.filter((each) => each.name === destination);
      return db.transaction().execute(async (trx) => {
        const call = await findCall(trx, callId, { forUpdate: true });
        if (call === null) return null;
        return add(trx, call, planDeliveries(null, call), now, { only, redelivery: true });
      });
    },
    async backfill(db, since, now) {
      let calls = 0;
      let deliveries = 0;
      let after: string | null = null;
      // In batches of calls, each its own transaction: a long history never holds the writer for long.
      for (;;) {
        const ids: string[] = (
          await db
            .selectFrom('calls')
            .select('call_id')
            .where('first_seen_at', '>=', since)
            .$if(after !== null, (query) => query.where('call_id', '>', after as string))
            .orderBy('call_id')
            .limit(BACKFILL_BATCH)
            .execute()
        ).map((row) => row.call_id);
        if (ids.length === 0) return { calls, deliveries };
        deliveries += await db.transaction().execute(async (trx) => {
          let added = 0;
          for (const callId of ids) {
            const call = await findCall(trx, callId, { forUpdate: true });
            if (call !== null) added += await add(trx, call, planDeliveries(null, call), now);
          }
          return added;
        });
        calls += ids.length;
        after = ids.at(-1) as string;
      }
    },
  };
}
