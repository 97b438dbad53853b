import { presentCall } from '../api/call-view.ts';
import type { DatabaseConfig } from '../config/config.ts';
import { findCalls } from '../db/calls-repository.ts';
import { createDatabaseSignal, type DatabaseSignal } from '../db/database-signal.ts';
import type { Db } from '../db/database.ts';
import { findFetchJobs } from '../db/fetch-jobs-repository.ts';
import { coerceError } from '../errors.ts';
import type { Logger } from '../log/logger.ts';

/** Changes announced within this long are loaded (and, on PostgreSQL, sent) together. */
const COALESCE_MS = 25;
/** More changed calls than this at once: the pages refetch rather than being sent them all. */
const MAX_CALLS_PER_BATCH = 500;
/** pg_notify refuses a payload of 8000 bytes or more. */
const MAX_NOTIFICATION_BYTES = 7_900;
const RESYNC_PAYLOAD = '*';
const PING_INTERVAL_MS = 15_000;

/** Server-sent events, each written once and sent as the same text to every stream. */
const SSE_RESYNC = 'event: resync\ndata: {}\n\n';
const SSE_PING = ': ping\n\n';

/** One open live stream (GET /api/live): what it is sent, and how it is ended. */
export interface LiveStream {
  write(text: string): void;
  end(): void;
}

/**
 * Which calls changed, for the dashboard's live list. Writers announce the ids of calls whose
 * visible state they changed, after their commit. With PostgreSQL the ids go to every replica
 * over LISTEN/NOTIFY; with SQLite there is one process. Each replica loads a batch of changed
 * calls once and writes the same text to all its open streams, so a hundred open pages cost one
 * query. When changes may have been missed (the notification channel lost and regained, a batch
 * too large to send), the streams are told to resync: each page refetches what it shows.
 */
export interface CallChanges {
  /** After commit: these calls changed. */
  announce(callIds: Iterable<string>): void;
  /** After commit: too many calls changed to name (a bulk retry, a backfill). */
  announceResync(): void;
  /** Starts sending to a stream; returns what stops it (when its client goes). */
  subscribe(stream: LiveStream): () => void;
  /** Ends every stream and stops listening. */
  close(): Promise<void>;
}

export function createCallChanges(deps: { db: Db; database: DatabaseConfig; logger: Logger }): CallChanges {
  const { db, logger } = deps;
  const streams = new Set<LiveStream>();
  let closed = false;

  // Received: calls to load and send to this replica's streams.
  let changed = new Set<string>();
  let resyncDue = false;
  let loadTimer: NodeJS.Timeout | undefined;
  let loading: Promise<void> | undefined;
  let pingTimer: NodeJS.Timeout | undefined;

  // Announced here, to be sent to every replica (PostgreSQL).
  let outgoing = new Set<string>();
  let outgoingResync = false;
  let sendTimer: NodeJS.Timeout | undefined;

  const signal: DatabaseSignal | null =
    deps.database.dialect === 'postgres'
      ? createDatabaseSignal({
          db,
          database: deps.database,
          logger,
          channel: 'wavoip_recordings_call_changes',
          onAnnounced: (payload) => {
            if (payload !== undefined) receiveNotification(payload);
          },
          onRegained: () => receive([], true),
          messages: {
            regained: '[Live] Listening for changed calls again; open dashboard pages refetch',
            lost: '[Live] Lost the database notification channel; listening again in {delay} (dashboard pages miss other replicas\' changes meanwhile)',
          },
        })
      : null;

  function receiveNotification(payload: string): void {
    if (payload === RESYNC_PAYLOAD) return receive([], true);
    try {
      const ids: unknown = JSON.parse(payload);
      if (Array.isArray(ids) && ids.every((id) => typeof id === 'string')) return receive(ids as string[], false);
    } catch {
      // Not ours: treated as changes unknown.
    }
    receive([], true);
  }

  function receive(callIds: Iterable<string>, resync: boolean): void {
    // Nobody watching on this replica: nothing to load.
    if (closed || streams.size === 0) return;
    for (const callId of callIds) changed.add(callId);
    if (resync || changed.size > MAX_CALLS_PER_BATCH) resyncDue = true;
    loadTimer ??= setTimeout(() => {
      loadTimer = undefined;
      void flush();
    }, COALESCE_MS);
  }

  /** One at a time: a batch loaded after another shows the calls as they are after it. */
  async function flush(): Promise<void> {
    while (loading !== undefined) await loading;
    if (closed || (changed.size === 0 && !resyncDue)) return;
    const callIds = [...changed];
    const resync = resyncDue;
    changed = new Set();
    resyncDue = false;
    loading = (resync ? Promise.resolve(SSE_RESYNC) : loadEvent(callIds))
      .then(broadcast)
      .finally(() => {
        loading = undefined;
      });
    await loading;
  }

  async function loadEvent(callIds: string[]): Promise<string> {
    try {
      const calls = await findCalls(db, callIds);
      const jobs = await findFetchJobs(db, calls.map((call) => call.callId));
      if (calls.length === 0) return '';
      return `event: calls\ndata: ${JSON.stringify({ calls: calls.map((call) => presentCall(call, jobs.get(call.callId))) })}\n\n`;
    } catch (caught) {
      if (closed) return '';
      const error = coerceError(caught);
      logger.warn({ err: error, calls: callIds.length }, `[Live] Could not load ${callIds.length} changed calls (${error.message}); open dashboard pages refetch`);
      return SSE_RESYNC;
    }
  }

  function broadcast(text: string): void {
    if (text === '' || closed) return;
    for (const stream of streams) stream.write(text);
  }

  async function sendOutgoing(): Promise<void> {
    const callIds = [...outgoing];
    const resync = outgoingResync || callIds.length > MAX_CALLS_PER_BATCH;
    outgoing = new Set();
    outgoingResync = false;
    const payloads = resync ? [RESYNC_PAYLOAD] : notificationPayloads(callIds);
    for (const payload of payloads) {
      try {
        await (signal as DatabaseSignal).send(payload);
      } catch (caught) {
        // This replica's own pages at least: the others' miss it.
        if (closed) return;
        logger.warn({ err: coerceError(caught) }, `[Live] Could not tell the other replicas of changed calls: ${coerceError(caught).message}`);
        receive(resync ? [] : callIds, resync);
        return;
      }
    }
  }

  function ping(): void {
    for (const stream of streams) stream.write(SSE_PING);
  }

  return {
    announce(callIds) {
      if (closed) return;
      if (signal === null) return receive(callIds, false);
      for (const callId of callIds) outgoing.add(callId);
      if (outgoing.size === 0) return;
      sendTimer ??= setTimeout(() => {
        sendTimer = undefined;
        void sendOutgoing();
      }, COALESCE_MS);
    },
    announceResync() {
      if (closed) return;
      if (signal === null) return receive([], true);
      outgoingResync = true;
      sendTimer ??= setTimeout(() => {
        sendTimer = undefined;
        void sendOutgoing();
      }, COALESCE_MS);
    },
    subscribe(stream) {
      if (closed) {
        stream.end();
        return () => {};
      }
      streams.add(stream);
      if (pingTimer === undefined) {
        pingTimer = setInterval(ping, PING_INTERVAL_MS);
        pingTimer.unref();
      }
      return () => {
        streams.delete(stream);
        if (streams.size === 0) {
          clearInterval(pingTimer);
          pingTimer = undefined;
        }
      };
    },
    async close() {
      closed = true;
      clearTimeout(loadTimer);
      clearTimeout(sendTimer);
      clearInterval(pingTimer);
      for (const stream of streams) stream.end();
      streams.clear();
      await signal?.close();
    },
  };
}

/** The ids as JSON arrays, each under pg_notify's limit. */
export function notificationPayloads(callIds: string[]): string[] {
  const payloads: string[] = [];
  let chunk: string[] = [];
  let bytes = 2;
  for (const callId of callIds) {
    const size = Buffer.byteLength(JSON.stringify(callId)) + 1;
    if (chunk.length > 0 && bytes + size > MAX_NOTIFICATION_BYTES) {
      payloads.push(JSON.stringify(chunk));
      chunk = [];
      bytes = 2;
    }
    chunk.push(callId);
    bytes += size;
  }
  if (chunk.length > 0) payloads.push(JSON.stringify(chunk));
  return payloads;
}
