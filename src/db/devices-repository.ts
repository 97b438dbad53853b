import { sql } from 'kysely';
import type { DbOrTrx } from './database.ts';

export interface DeviceUpdate {
  deviceId: string;
  phone: string | null;
  status: string | null;
  seenAt: number;
}

/** DEVICE events are heartbeat-like: keep the latest state only. */
export async function upsertDevice(db: DbOrTrx, device: DeviceUpdate): Promise<void> {
  await db
    .insertInto('devices')
    .values({ device_id: device.deviceId, phone: device.phone, status: device.status, last_seen_at: device.seenAt })
    .onConflict((conflict) =>
      conflict.column('device_id').doUpdateSet({
        phone: sql`coalesce(excluded.phone, devices.phone)`,
        status: sql`case when excluded.last_seen_at >= devices.last_seen_at then coalesce(excluded.status, devices.status) else devices.status end`,
        last_seen_at: sql`case when excluded.last_seen_at > devices.last_seen_at then excluded.last_seen_at else devices.last_seen_at end`,
      }),
    )
    .execute();
}

/** Forgets devices not heard from since `before` (their events are pruned on the same schedule). */
export async function pruneDevices(db: DbOrTrx, before: number): Promise<number> {
  const result = await db.deleteFrom('devices').where('last_seen_at', '<', before).executeTakeFirst();
  return Number(result.numDeletedRows);
}
