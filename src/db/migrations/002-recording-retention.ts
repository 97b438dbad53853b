import type { Kysely } from 'kysely';

// Frozen, like every migration. RECORDING_RETENTION walks attached recordings oldest first.
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createIndex('calls_attached_oldest')
    .ifNotExists()
    .on('calls')
    .columns(['attachment_state', 'attached_at'])
    .execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropIndex('calls_attached_oldest').ifExists().execute();
}
