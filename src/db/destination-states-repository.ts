import type { DbOrTrx } from './database.ts';

/**
 * A destination that cannot take deliveries: `blocked` by settings that are wrong (a 401, a
 * 403, a 404 on its address), probed once in a while and resumed by a success; or `disabled`
 * by its receiver (a 410 Gone), for good. Kept in the database, so every replica sees it.
 */
interface DestinationState {
  destination: string;
  state: 'blocked' | 'disabled';
  reason: string;
  since: number;
  nextProbeAt: number | null;
}

export async function listDestinationStates(db: DbOrTrx): Promise<Map<string, DestinationState>> {
  const rows = await db.selectFrom('destination_states').selectAll().execute();
  return new Map(
    rows.map((row) => [
      row.destination,
      { destination: row.destination, state: row.state as DestinationState['state'], reason: row.reason, since: row.since, nextProbeAt: row.next_probe_at },
    ]),
  );
}

/** Blocks a destination (keeping when it was first blocked); true when it was not blocked before. */
export async function blockDestination(db: DbOrTrx, input: { destination: string; reason: string; now: number; nextProbeAt: number }): Promise<boolean> {
  const existing = await db.selectFrom('destination_states').select('state').where('destination', '=', input.destination).executeTakeFirst();
  if (existing?.state === 'disabled') return false;
  await db
    .insertInto('destination_states')
    .values({ destination: input.destination, state: 'blocked', reason: input.reason, since: input.now, next_probe_at: input.nextProbeAt })
    .onConflict((conflict) => conflict.column('destination').doUpdateSet({ reason: input.reason, next_probe_at: input.nextProbeAt }))
    .execute();
  return existing === undefined;
}

export async function disableDestination(db: DbOrTrx, input: { destination: string; reason: string; now: number }): Promise<void> {
  await db
    .insertInto('destination_states')
    .values({ destination: input.destination, state: 'disabled', reason: input.reason, since: input.now, next_probe_at: null })
    .onConflict((conflict) => conflict.column('destination').doUpdateSet({ state: 'disabled', reason: input.reason, since: input.now, next_probe_at: null }))
    .execute();
}

/** A delivery to a blocked destination went through: its settings are right again. True when it was blocked. */
export async function unblockDestination(db: DbOrTrx, destination: string): Promise<boolean> {
  const result = await db.deleteFrom('destination_states').where('destination', '=', destination).where('state', '=', 'blocked').executeTakeFirst();
  return result.numDeletedRows > 0n;
}

/** Takes a blocked destination's due probe for this replica (one replica wins); false when not due or taken. */
export async function takeProbe(db: DbOrTrx, input: { destination: string; now: number; nextProbeAt: number }): Promise<boolean> {
  const result = await db
    .updateTable('destination_states')
    .set({ next_probe_at: input.nextProbeAt })
    .where('destination', '=', input.destination)
    .where('state', '=', 'blocked')
    .where('next_probe_at', '<=', input.now)
    .executeTakeFirst();
  return result.numUpdatedRows > 0n;
}

/** An operator's reset: the destination takes deliveries again. Returns what it was (null: open already). */
export async function resetDestination(db: DbOrTrx, destination: string): Promise<DestinationState['state'] | null> {
  const row = await db.deleteFrom('destination_states').where('destination', '=', destination).returning('state').executeTakeFirst();
  return (row?.state as DestinationState['state'] | undefined) ?? null;
}
