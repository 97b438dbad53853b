import type { DbOrTrx } from './database.ts';

interface DashboardSession {
  idHash: string;
  csrfToken: string;
  createdAt: number;
  expiresAt: number;
}

export async function insertDashboardSession(db: DbOrTrx, session: DashboardSession): Promise<void> {
  await db
    .insertInto('dashboard_sessions')
    .values({ id_hash: session.idHash, csrf_token: session.csrfToken, created_at: session.createdAt, expires_at: session.expiresAt })
    .execute();
}

/** The session whose cookie hashes to `idHash`, unless it has expired (or was signed out). */
export async function findLiveDashboardSession(db: DbOrTrx, idHash: string, now: number): Promise<DashboardSession | null> {
  const row = await db.selectFrom('dashboard_sessions').selectAll().where('id_hash', '=', idHash).where('expires_at', '>', now).executeTakeFirst();
  return row ? { idHash: row.id_hash, csrfToken: row.csrf_token, createdAt: row.created_at, expiresAt: row.expires_at } : null;
}

export async function deleteDashboardSession(db: DbOrTrx, idHash: string): Promise<void> {
  await db.deleteFrom('dashboard_sessions').where('id_hash', '=', idHash).execute();
}

/** Removes sessions past their expiry; returns how many. */
export async function pruneExpiredDashboardSessions(db: DbOrTrx, now: number): Promise<number> {
  const result = await db.deleteFrom('dashboard_sessions').where('expires_at', '<=', now).executeTakeFirst();
  return Number(result.numDeletedRows);
}
