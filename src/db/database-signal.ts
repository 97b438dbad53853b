import { sql } from 'kysely';
import pg from 'pg';
import type { DatabaseConfig } from '../config/config.ts';
import { coerceError } from '../errors.ts';
import type { Logger } from '../log/logger.ts';
import { TCP_KEEPALIVE_DELAY_MS, type Db } from './database.ts';

const RECONNECT_DELAYS_MS = [250, 1_000, 5_000, 15_000];

/**
 * Tells every replica sharing a PostgreSQL database that something changed (LISTEN/NOTIFY on
 * one channel). With SQLite there is one process, which acts on its own changes directly, so
 * nothing is sent.
 */
export interface DatabaseSignal {
  /** After a commit: every listening replica's `onAnnounced` runs. */
  announce(): void;
  /** Like announce, with a payload (under 8000 bytes) for `onAnnounced`; rejects when it could not be sent. */
  send(payload: string): Promise<void>;
  close(): Promise<void>;
}

export interface DatabaseSignalOptions {
  db: Db;
  database: DatabaseConfig;
  logger: Logger;
  channel: string;
  /**
   * With the payload of the notification; also run (without one) after (re)connecting, for
   * whatever was announced while not listening.
   */
  onAnnounced: (payload?: string) => void;
  /** After listening again once the channel was lost: what was announced meanwhile is unknown. */
  onRegained?: () => void;
  /** Log lines: listening again, and what still happens while the channel is lost. */
  messages: { regained: string; lost: string };
}

export function createDatabaseSignal(deps: DatabaseSignalOptions): DatabaseSignal {
  const { db, database, logger, onAnnounced, channel, messages } = deps;
  if (database.dialect !== 'postgres') return { announce() {}, async send() {}, async close() {} };
  const { url } = database;

  let closed = false;
  let client: pg.Client | undefined;
  let reconnectTimer: NodeJS.Timeout | undefined;
  let failures = 0;

  async function listen(): Promise<void> {
    const connection = new pg.Client({ connectionString: url, keepAlive: true, keepAliveInitialDelayMillis: TCP_KEEPALIVE_DELAY_MS, connectionTimeoutMillis: 10_000 });
    connection.on('notification', (message) => onAnnounced(message.payload));
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
    const regained = failures > 0;
    if (regained) logger.info(messages.regained);
    failures = 0;
    if (regained) deps.onRegained?.();
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
      messages.lost.replace('{delay}', `${delay}ms`),
    );
    reconnectTimer = setTimeout(() => {
      reconnectTimer = undefined;
      void listen();
    }, delay);
  }

  void listen();

  async function send(payload: string): Promise<void> {
    await sql`select pg_notify(${channel}, ${payload})`.execute(db);
  }

  return {
    announce(): void {
      // Best effort: each user of a signal also looks on a schedule of its own.
      send('').catch(() => {});
    },
    send,
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
