import { sql, type Selectable } from 'kysely';
import type { DeviceStatus } from '../devices/device-status.ts';
import type { DbOrTrx } from './database.ts';
import type { DevicesTable } from './schema.ts';

interface DeviceUpdate {
  deviceId: string;
  /** The webhook's receive time. */
  seenAt: number;
  tenant: string | null;
  /** Set by DEVICE events only: a CALL or RECORD naming the device only says it was heard from. */
  report?: { phone: string | null; status: string | null; normalizedStatus: DeviceStatus };
}

export interface StoredDevice {
  deviceId: string;
  phone: string | null;
  status: string | null;
  normalizedStatus: DeviceStatus;
  statusAt: number | null;
  statusChangedAt: number | null;
  lastSeenAt: number;
  tenant: string | null;
}

/**
 * Keeps each device's latest state. Every field is taken only from an event at least as recent
 * as the one it came from, so events applied out of order never bring an older state back; the
 * status's change time moves only when the normalised status differs (a heartbeat repeating it
 * leaves it). A device's tenant is that of its latest webhook that came with a group token: a
 * device can be handed from one customer to another.
 */
/**
 * Records what a webhook says of a device. A device belongs to the device group whose token first
 * reported it: another group's token changes nothing of it (false), so that one customer's token
 * cannot take over another's device or feed its phone into their calls. The operator's own
 * WEBHOOK_TOKEN (no tenant) may update any device, and keeps its group.
 */
export async function upsertDevice(db: DbOrTrx, device: DeviceUpdate): Promise<boolean> {
  const report = device.report;
  const statusAt = report?.status == null ? null : device.seenAt;
  const newer = sql`excluded.status_at is not null and (devices.status_at is null or excluded.status_at >= devices.status_at)`;
  const result = await db
    .insertInto('devices')
    .values({
      device_id: device.deviceId,
      phone: report?.phone ?? null,
      status: statusAt === null ? null : (report?.status ?? null),
      normalized_status: statusAt === null ? null : (report?.normalizedStatus ?? null),
      status_at: statusAt,
      status_changed_at: statusAt,
      last_seen_at: device.seenAt,
      tenant: device.tenant,
    })
    .onConflict((conflict) =>
      conflict.column('device_id').doUpdateSet({
        phone: sql`case when excluded.last_seen_at >= devices.last_seen_at then coalesce(excluded.phone, devices.phone) else coalesce(devices.phone, excluded.phone) end`,
        status: sql`case when ${newer} then excluded.status else devices.status end`,
        normalized_status: sql`case when ${newer} then excluded.normalized_status else devices.normalized_status end`,
        status_changed_at: sql`case when ${newer} and excluded.normalized_status is distinct from devices.normalized_status then excluded.status_at else devices.status_changed_at end`,
        status_at: sql`case when ${newer} then excluded.status_at else devices.status_at end`,
        last_seen_at: sql`case when excluded.last_seen_at > devices.last_seen_at then excluded.last_seen_at else devices.last_seen_at end`,
        tenant: sql`coalesce(devices.tenant, excluded.tenant)`,
      }).where(sql<boolean>`devices.tenant is null or excluded.tenant is null or devices.tenant = excluded.tenant`),
    )
    .executeTakeFirst();
  return Number(result.numInsertedOrUpdatedRows ?? 0n) > 0;
}

/** Forgets devices not heard from since `before` (their events are pruned on the same schedule). */
export async function pruneDevices(db: DbOrTrx, before: number): Promise<number> {
  const result = await db.deleteFrom('devices').where('last_seen_at', '<', before).executeTakeFirst();
  return Number(result.numDeletedRows);
}

export async function findDevice(db: DbOrTrx, deviceId: string): Promise<StoredDevice | null> {
  if (deviceId.includes('\u0000')) return null;
  const row = await db.selectFrom('devices').selectAll().where('device_id', '=', deviceId).executeTakeFirst();
  return row ? toStoredDevice(row) : null;
}

interface DevicePageQuery {
  tenant?: string | undefined;
  status?: DeviceStatus | undefined;
  /** true: only devices silent since `silentBefore`; false: only the others. */
  silent?: boolean | undefined;
  silentBefore: number;
  limit: number;
  /** The device id after which the page starts. */
  after?: string | undefined;
}

/** By device id, keyset-paginated. */
export async function listDevices(db: DbOrTrx, query: DevicePageQuery): Promise<{ devices: StoredDevice[]; hasMore: boolean }> {
  let select = db.selectFrom('devices').selectAll();
  if (query.tenant !== undefined) select = select.where('tenant', '=', query.tenant);
  if (query.status !== undefined) {
    const status = query.status;
    select = status === 'unknown' ? select.where((eb) => eb.or([eb('normalized_status', 'is', null), eb('normalized_status', '=', status)])) : select.where('normalized_status', '=', status);
  }
  if (query.silent !== undefined) select = select.where('last_seen_at', query.silent ? '<=' : '>', query.silentBefore);
  if (query.after !== undefined) select = select.where('device_id', '>', query.after);
  const rows = await select.orderBy('device_id').limit(query.limit + 1).execute();
  return { devices: rows.slice(0, query.limit).map(toStoredDevice), hasMore: rows.length > query.limit };
}

/** Devices heard from before `before` (silent ones), the most recently heard from first. */
export async function listSilentDevices(db: DbOrTrx, before: number, limit?: number): Promise<StoredDevice[]> {
  const rows = await db
    .selectFrom('devices')
    .selectAll()
    .where('last_seen_at', '<=', before)
    .orderBy('last_seen_at', 'desc')
    .orderBy('device_id')
    .$if(limit !== undefined, (query) => query.limit(limit as number))
    .execute();
  return rows.map(toStoredDevice);
}

export async function countSilentDevices(db: DbOrTrx, before: number): Promise<number> {
  const row = await db
    .selectFrom('devices')
    .select((eb) => eb.fn.countAll<number | string | bigint>().as('count'))
    .where('last_seen_at', '<=', before)
    .executeTakeFirst();
  return Number(row?.count ?? 0);
}

/** Calls each device took part in since `since`, by the calls' first event. */
export async function countRecentCalls(db: DbOrTrx, deviceIds: string[], since: number): Promise<Map<string, number>> {
  if (deviceIds.length === 0) return new Map();
  const rows = await db
    .selectFrom('calls')
    .select((eb) => ['device_id', eb.fn.countAll<number | string | bigint>().as('count')])
    .where('device_id', 'in', deviceIds)
    .where('first_seen_at', '>=', since)
    .groupBy('device_id')
    .execute();
  return new Map(rows.map((row) => [row.device_id as string, Number(row.count)]));
}

function toStoredDevice(row: Selectable<DevicesTable>): StoredDevice {
  return {
    deviceId: row.device_id,
    phone: row.phone,
    status: row.status,
    normalizedStatus: (row.normalized_status ?? 'unknown') as DeviceStatus,
    statusAt: row.status_at,
    statusChangedAt: row.status_changed_at,
    lastSeenAt: row.last_seen_at,
    tenant: row.tenant,
  };
}

/** Our own number on a device's calls, as its DEVICE events gave it (null until one did). */
export async function findDevicePhone(db: DbOrTrx, deviceId: string, tenant: string | null): Promise<string | null> {
  // Only a device of the call's own group (or of none) tells the call its number.
  const row = await db
    .selectFrom('devices')
    .select('phone')
    .where('device_id', '=', deviceId)
    .where((eb) => (tenant === null ? eb('tenant', 'is', null) : eb.or([eb('tenant', 'is', null), eb('tenant', '=', tenant)])))
    .executeTakeFirst();
  return row?.phone ?? null;
}
