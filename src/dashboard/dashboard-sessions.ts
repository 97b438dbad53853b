import { createHash, randomBytes } from 'node:crypto';
import type { Clock } from '../clock.ts';
import type { Db } from '../db/database.ts';
import {
  deleteDashboardSession,
  findLiveDashboardSession,
  insertDashboardSession,
  pruneExpiredDashboardSessions,
} from '../db/dashboard-sessions-repository.ts';

export const SESSION_COOKIE = 'wavoip_session';
export const CSRF_HEADER = 'x-csrf-token';

export interface LiveSession {
  csrfToken: string;
  expiresAt: number;
}

/**
 * Dashboard sign-ins. The cookie's value is 32 random bytes; the database keeps only its sha256,
 * so a copy of the database signs nobody in. Looking a session up by that hash needs no
 * constant-time compare: timing could at most tell a guesser about a hash, not a cookie.
 */
export interface DashboardSessions {
  /** A new session: the cookie's value (given to the browser only), its CSRF token and expiry. */
  signIn(): Promise<{ cookie: string } & LiveSession>;
  /** The session a cookie belongs to, unless it expired or was signed out. */
  find(cookie: string): Promise<LiveSession | null>;
  signOut(cookie: string): Promise<void>;
  ttlMs: number;
}

export function createDashboardSessions(deps: { db: Db; clock: Clock; ttlMs: number }): DashboardSessions {
  const { db, clock, ttlMs } = deps;
  const hash = (cookie: string) => createHash('sha256').update(cookie, 'utf8').digest('hex');
  return {
    ttlMs,
    async signIn() {
      const now = clock.now();
      // Sessions are only made here, so pruning here bounds the table by the sign-ins of one TTL.
      await pruneExpiredDashboardSessions(db, now);
      const cookie = randomBytes(32).toString('base64url');
      const csrfToken = randomBytes(32).toString('base64url');
      const expiresAt = now + ttlMs;
      await insertDashboardSession(db, { idHash: hash(cookie), csrfToken, createdAt: now, expiresAt });
      return { cookie, csrfToken, expiresAt };
    },
    async find(cookie) {
      const session = await findLiveDashboardSession(db, hash(cookie), clock.now());
      return session === null ? null : { csrfToken: session.csrfToken, expiresAt: session.expiresAt };
    },
    async signOut(cookie) {
      await deleteDashboardSession(db, hash(cookie));
    },
  };
}
