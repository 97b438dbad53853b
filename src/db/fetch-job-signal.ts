import { sql } from 'kysely';
import pg from 'pg';
import type { DatabaseConfig } from '../config/config.ts';
import { coerceError } from '../errors.ts';
import type { Logger } from '../log/logger.ts';
import { TCP_KEEPALIVE_DELAY_MS, type Db } from './database.ts';

const CHANNEL = 'wavoip_recordings_fetch_jobs';
const RECONNECT_DELAYS_MS = [250, 1_000, 5_000, 15_000];

/**
 * Tells every replica sharing a PostgreSQL database that fetch work is due now, so an idle
 * replica starts it at once rather than at its next scan. With SQLite there is one process,
 * whose own scheduler is woken directly, so nothing is sent.
 */
export interface FetchJobSignal {
  /** After a commit that made a job due: every listening replica's `onAnnounced` runs. */
  announce(): void;
  close(): Promise<void>;
}

export function createFetchJobSignal(deps: {
  db: Db;
  database: DatabaseConfig;
  logger: Logger;
  onAnnounced: () => void;
  /** Another kind of work (deliveries) wakes its own listeners; default the fetch jobs'. */
  channel?: string;
}): FetchJobSignal {
  const { db, database, logger, onAnnounced } = deps;
  const channel = deps.channel ?? CHANNEL;
  if (database.dialect !== 'postgres') return { announce() {}, async close() {} };
  const { url } = database;

  let closed = false;
  let client: pg.Client | undefined;
  let reconnectTimer: NodeJS.Timeout | undefined;
  let failures = 0;

  async function listen(): Promise<void> {
    const connection = new pg.Client({ connectionString: url, keepAlive: true, keepAliveInitialDelayMillis: TCP_KEEPALIVE_DELAY_MS, connectionTimeoutMillis: 10_000 });
    connection.on('notification', () => onAnnounced());
    connection.on('error', (error) => reconnect(connection, error));
    connection.on('end', () => reconnect(connection));
    try {
      await connection.connect();
      await connection.query(`LISTEN ${channel}`);
    } catch (caught) {
      reconnect(connection, caught);
      return;
    }
    if (closed) {
      await connection.end();
      return;
    }
    client = connection;
    if (failures > 0) logger.info('[WaVoIP Jobs] Listening for new fetch jobs again');
    failures = 0;
    // Whatever was announced while not listening is picked up now.
    onAnnounced();
  }

  function reconnect(connection: pg.Client, caught?: unknown): void {
    if (closed || (client !== undefined && client !== connection) || reconnectTimer !== undefined) return;
    client = undefined;
    // Abandoned for good: a late event from it must not start a second listener. The no-op
    // keeps a late 'error' from crashing the process.
    connection.removeAllListeners();
    connection.on('error', () => {});
    connection.end().catch(() => {});
    const delay = RECONNECT_DELAYS_MS[Math.min(failures, RECONNECT_DELAYS_MS.length - 1)]!;
    failures += 1;
    logger.warn(
      { err: caught === undefined ? undefined : coerceError(caught) },
      `[WaVoIP Jobs] Lost the database notification channel; listening again in ${delay}ms (jobs are still found by the regular scan)`,
    );
    reconnectTimer = setTimeout(() => {
      reconnectTimer = undefined;
      void listen();
    }, delay);
  }

  void listen();

  return {
    announce(): void {
      // Best effort: a lost notification only delays the job until a replica's next scan.
      sql`select pg_notify(${channel}, '')`.execute(db).catch(() => {});
    },
    async close(): Promise<void> {
      closed = true;
      clearTimeout(reconnectTimer);
      const connection = client;
      client = undefined;
      connection?.removeAllListeners('end');
      await connection?.end().catch(() => {});
    },
  };
}
