/**
 * Graceful shutdown: on SIGTERM the service stops taking connections and claiming jobs, answers
 * the requests in flight and lets the downloads in flight finish (aborting, after the grace,
 * those still running: they run again after restart), closes the database and exits 0, and no
 * client can hold that up for ever: a request that never finishes sending gets 408 after the
 * request timeout, and at shutdown its connection is closed after the grace.
 *
 * The clients here are raw TCP sockets, so that a test decides exactly which bytes have been
 * sent when the signal arrives. `Expect: 100-continue` makes the service say when it has read a
 * request's headers (and so counts it as in flight) before the test sends its body.
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startFakeWavoipStorage, type FakeWavoipStorage } from '../support/fake-wavoip-storage.ts';
import {
  API_TOKEN,
  NO_POLLING,
  WEBHOOK_TOKEN,
  makeDataDir,
  startChildService,
  startInProcessService,
  testEnvironment,
  waitFor,
  type ChildService,
  type InProcessService,
} from '../support/service-harness.ts';
import { parseHttpAnswer, RawConnection } from '../support/raw-http.ts';
import { sha256 } from '../support/sha256.ts';
import { openTestDatabase, testDialect } from '../support/test-database.ts';
import { silentWav } from '../support/wav.ts';

let storage: FakeWavoipStorage;
const children: ChildService[] = [];
const inProcess: InProcessService[] = [];
const connections: RawConnection[] = [];

beforeAll(async () => {
  storage = await startFakeWavoipStorage();
});
afterEach(async () => {
  for (const connection of connections.splice(0)) connection.socket.destroy();
  await Promise.all(children.splice(0).map((child) => child.kill('SIGKILL')));
  await Promise.all(inProcess.splice(0).map((service) => service.stop()));
});
afterAll(async () => {
  await storage?.close();
});

async function startChild(env: Record<string, string>): Promise<ChildService> {
  const child = await startChildService(env);
  children.push(child);
  return child;
}

const portOf = (url: string) => Number(new URL(url).port);
const databaseFile = (dataDir: string) => path.join(dataDir, 'wavoip-recordings.sqlite');
const WEBHOOK_TARGET = `/webhooks/wavoip?token=${WEBHOOK_TOKEN}`;

/** A raw connection, closed after the test whatever happened. */
async function openConnection(port: number): Promise<RawConnection> {
  const connection = await RawConnection.open(port);
  connections.push(connection);
  return connection;
}

/** Headers of a webhook POST announcing `length` bytes, asking the server to confirm it read them. */
function webhookHead(port: number, length: number): string {
  return [
    `POST ${WEBHOOK_TARGET} HTTP/1.1`,
    `Host: 127.0.0.1:${port}`,
    'Content-Type: application/json',
    `Content-Length: ${length}`,
    'Expect: 100-continue',
    '',
    '',
  ].join('\r\n');
}

/** Opens a webhook POST, waits until the service has read its headers, and sends the first `sent` bytes of `body`. */
async function startWebhook(port: number, body: Buffer, sent: number): Promise<RawConnection> {
  const connection = await openConnection(port);
  connection.write(webhookHead(port, body.length));
  await waitFor(() => connection.received().toString('latin1').startsWith('HTTP/1.1 100 Continue\r\n'), 'the service to read the webhook headers');
  connection.write(body.subarray(0, sent));
  return connection;
}

function connectionRefused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', (error: NodeJS.ErrnoException) => resolve(error.code === 'ECONNREFUSED'));
  });
}

/**
 * What a clean close leaves. SQLite (the WAL file and `integrity_check` exist only there):
 * the WAL checkpointed into the database and deleted with the last connection, and an intact
 * file. PostgreSQL keeps its own files consistent; what the service must do there is end its
 * connections (the pool and the LISTEN one), so none of them is left on the server. (An idle
 * pooled connection that was leaked would only go after the pool's 10 s idle timeout.)
 */
async function expectDatabaseClosedCleanly(env: Record<string, string>): Promise<void> {
  if (testDialect === 'sqlite') {
    const file = databaseFile(env.DATA_DIR as string);
    expect(fs.existsSync(`${file}-wal`)).toBe(false);
    const database = new Database(file, { readonly: true, fileMustExist: true });
    try {
      expect(database.pragma('integrity_check', { simple: true })).toBe('ok');
    } finally {
      database.close();
    }
    return;
  }
  const database = await openTestDatabase(env);
  try {
    const others = async () =>
      (await database.get<{ n: number }>('select count(*) as n from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()'))?.n;
    await waitFor(async () => (await others()) === 0, "the service's connections to be closed", 5_000);
  } finally {
    await database.close();
  }
}

describe('graceful shutdown (SIGTERM)', () => {
  it('answers the requests in flight, refuses new connections, drops idle ones, closes the database and exits 0', async () => {
    const dataDir = await makeDataDir();
    const env = testEnvironment(storage.origin, dataDir, NO_POLLING);
    // 16 MiB: more than loopback buffers hold, so a reader that pauses keeps its answer in flight.
    const recording = silentWav(16 * 1024 * 1024);
    storage.setRoute('/GRACEFUL-RECORDING', { kind: 'body', body: recording, contentType: 'audio/wav' });
    const service = await startChild(env);
    const port = portOf(service.url);
    await service.postWebhook({ type: 'RECORD', whatsapp_call_id: 'GRACEFUL-RECORDING', record_status: 'READY', record_url: storage.url('/GRACEFUL-RECORDING') });
    await service.waitForAttachment('GRACEFUL-RECORDING', 'attached');

    // An idle keep-alive connection: answered once, left open.
    const idle = await openConnection(port);
    idle.write(`GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`);
    expect((await idle.response('GET /healthz')).headers.get('connection')).toBe('keep-alive');

    // A recording being read by a client that has paused: its answer is in flight.
    const download = await openConnection(port);
    // Paused on its first chunk: polling for it instead left the whole 16 MiB time to arrive.
    download.socket.once('data', () => download.socket.pause());
    download.write(`GET /api/calls/GRACEFUL-RECORDING/recording HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAuthorization: Bearer ${API_TOKEN}\r\n\r\n`);
    await waitFor(() => download.receivedCount() > 0, 'the recording to start arriving');

    // A webhook whose headers and half its body have arrived.
    const body = Buffer.from(JSON.stringify({ type: 'CALL', whatsapp_call_id: 'GRACEFUL-IN-FLIGHT', status: 'ACTIVE', direction: 'INCOMING' }));
    const webhook = await startWebhook(port, body, Math.floor(body.length / 2));

    service.child.kill('SIGTERM');
    await waitFor(
      () => service.logs().some((line) => line.msg.startsWith('Shutting down: no longer accepting connections; waiting for 2 requests in flight')),
      'the service to stop listening with the webhook and the recording in flight',
    ).catch((error: Error) => {
      const log = service.logs().slice(-10).map((line) => line.msg);
      throw new Error(`${error.message} (${download.receivedCount()} of ${recording.length} bytes of the recording read; last log lines: ${JSON.stringify(log)})`);
    });
    expect(await connectionRefused(port)).toBe(true);
    await waitFor(() => idle.closed, 'the idle keep-alive connection to be closed by the service');
    expect(webhook.closed).toBe(false);

    webhook.write(body.subarray(Math.floor(body.length / 2)));
    const answer = await webhook.response('the webhook in flight');
    expect(answer.status).toBe(200);
    const { event_id: eventId } = JSON.parse(answer.body.toString('utf8')) as { received: boolean; event_id: string };
    expect(JSON.parse(answer.body.toString('utf8'))).toMatchObject({ received: true });
    // Answered keep-alive, the connection would hold the shutdown until it timed out.
    expect(answer.headers.get('connection')).toBe('close');
    await waitFor(() => webhook.closed, 'the webhook connection to be closed after its answer');

    download.socket.resume();
    await waitFor(() => download.closed, 'the recording to be sent whole and its connection closed');
    const sent = await download.response('the recording');
    expect(sent.status).toBe(200);
    expect(sent.body.length).toBe(recording.length);
    expect(sha256(sent.body)).toBe(sha256(recording));

    expect(await service.exited).toBe(0);
    const messages = service.logs().map((line) => line.msg);
    expect(messages).toContain('Shutting down: every request in flight was answered');
    expect(messages).toContain('Shutting down: database closed');
    expect(messages).toContain('Stopped');
    expect(messages.some((message) => message.includes('still open after'))).toBe(false);

    await expectDatabaseClosedCleanly(env);
    const database = await openTestDatabase(env);
    const stored = await database.get<{ payload: string }>('select payload from events where event_id = ?', [eventId]);
    await database.close();
    expect(stored?.payload).toBe(body.toString('utf8'));

    const restarted = await startChild(env);
    const call = await restarted.waitForAttachment('GRACEFUL-IN-FLIGHT', 'pending');
    expect(call.events.map((event) => event.event_id)).toContain(eventId);
  });

  it('still exits 0, database closed, when a client never finishes its body: its connection is closed after the grace', async () => {
    const env = testEnvironment(storage.origin, await makeDataDir(), { ...NO_POLLING, SHUTDOWN_GRACE: '300ms' });
    const service = await startChild(env);
    const body = Buffer.from(JSON.stringify({ type: 'CALL', whatsapp_call_id: 'NEVER-FINISHED', status: 'ACTIVE' }));
    const stalled = await startWebhook(portOf(service.url), body, 10);

    service.child.kill('SIGTERM');
    expect(await service.exited).toBe(0);

    await waitFor(() => stalled.closed, 'the stalled connection to be closed');
    expect(parseHttpAnswer(stalled.received(), { closed: true }).complete).toBe(false);
    const messages = service.logs().map((line) => line.msg);
    expect(messages).toContain('Shutting down: 1 connection still open after 0.3s (1 request unfinished); closing it');
    expect(messages).toContain('Shutting down: database closed');
    expect(messages).toContain('Stopped');
    await expectDatabaseClosedCleanly(env);
  });
});

describe('request timeout and shutdown grace', () => {
  async function startService(options: { httpRequestTimeoutMs?: number; shutdownGrace?: string }): Promise<InProcessService & { env: Record<string, string> }> {
    const { shutdownGrace, ...serviceOptions } = options;
    const env = testEnvironment(storage.origin, await makeDataDir(), { ...NO_POLLING, ...(shutdownGrace ? { SHUTDOWN_GRACE: shutdownGrace } : {}) });
    const service = await startInProcessService(env, serviceOptions);
    inProcess.push(service);
    return Object.assign(service, { env });
  }

  it('answers 408 and closes the connection when a body or the headers stall past the request timeout', async () => {
    const service = await startService({ httpRequestTimeoutMs: 300 });
    const port = portOf(service.url);

    const body = Buffer.from(JSON.stringify({ type: 'CALL', whatsapp_call_id: 'SLOW-BODY', status: 'ACTIVE' }));
    const stalledBody = await startWebhook(port, body, 10);
    const stalledHeaders = await openConnection(port);
    stalledHeaders.write(`POST ${WEBHOOK_TARGET} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Type: appl`);

    for (const [connection, what] of [
      [stalledBody, 'a stalled body'],
      [stalledHeaders, 'stalled headers'],
    ] as const) {
      const answer = await connection.response(what);
      expect(answer.status).toBe(408);
      expect(answer.headers.get('content-type')).toMatch(/^application\/json/);
      expect(JSON.parse(answer.body.toString('utf8'))).toMatchObject({ error: expect.any(String) });
      await waitFor(() => connection.closed, `${what}: the connection to be closed`);
    }
    expect((await service.postWebhook({ type: 'CALL', whatsapp_call_id: 'PROMPT', status: 'ACTIVE' })).status).toBe(200);
  });

  it('stop() closes stalled connections (body or headers) after the grace and still closes the database', async () => {
    const service = await startService({ shutdownGrace: '200ms' });
    const port = portOf(service.url);
    const body = Buffer.from(JSON.stringify({ type: 'CALL', whatsapp_call_id: 'STALLED-AT-STOP', status: 'ACTIVE' }));
    const stalledBody = await startWebhook(port, body, 10);
    const stalledHeaders = await openConnection(port);
    stalledHeaders.write(`POST ${WEBHOOK_TARGET} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Type: appl`);
    // Once the service answers on another connection, it has read what the stalled one sent.
    expect((await service.postWebhook({ type: 'CALL', whatsapp_call_id: 'BEFORE-STOP', status: 'ACTIVE' })).status).toBe(200);

    await service.stop();

    await waitFor(() => stalledBody.closed && stalledHeaders.closed, 'the stalled connections to be closed');
    const messages = service.logs().map((line) => line.msg);
    expect(messages).toContain('Shutting down: no longer accepting connections; waiting for 1 request in flight (at most 0.2s)');
    expect(messages).toContain('Shutting down: 2 connections still open after 0.2s (1 request unfinished); closing them');
    expect(messages).toContain('Shutting down: database closed');
    await expectDatabaseClosedCleanly(service.env);
  });
});

describe('downloads in flight at SIGTERM', () => {
  const wav = fs.readFileSync(new URL('../fixtures/audio/call-pt-br-9s.wav', import.meta.url));
  const partialDownloads = (dataDir: string): string[] => {
    const tempRoot = path.join(dataDir, 'recordings', '.tmp');
    return fs.existsSync(tempRoot) ? (fs.readdirSync(tempRoot, { recursive: true }) as string[]).filter((name) => name.endsWith('.part')) : [];
  };
  const postReady = (service: ChildService, callId: string) =>
    service.postWebhook({ type: 'RECORD', whatsapp_call_id: callId, record_status: 'READY', record_url: storage.url(`/${callId}`) });

  it('a download that finishes within the grace is attached, not fetched again, and the process exits 0', async () => {
    const dataDir = await makeDataDir();
    const env = testEnvironment(storage.origin, dataDir, { ...NO_POLLING, SHUTDOWN_GRACE: '60s' });
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    storage.setRoute('/DRAINED', { kind: 'paused-mid-body', body: wav, contentType: 'audio/wav', until: released });
    const service = await startChild(env);
    await postReady(service, 'DRAINED');
    await waitFor(() => storage.requests('/DRAINED') === 1 && partialDownloads(dataDir).length === 1, 'the download to be under way');

    service.child.kill('SIGTERM');
    await waitFor(
      () => service.logs().some((line) => line.msg === 'Shutting down: stopped claiming jobs; waiting for 1 download in flight to finish (at most 60s)'),
      'the service to wait for its download',
    );
    release();
    expect(await service.exited).toBe(0);
    const messages = service.logs().map((line) => line.msg);
    expect(messages).toContain('Shutting down: every download in flight finished');
    expect(messages).toContain('[WaVoIP Recording Webhook] ✅ Recording attached successfully');
    expect(messages.some((message) => message.includes('interrupted'))).toBe(false);
    expect(partialDownloads(dataDir)).toEqual([]);

    const restarted = await startChild(env);
    expect((await restarted.call('DRAINED')).attachment).toMatchObject({ state: 'attached', size: wav.length });
    expect(storage.requests('/DRAINED')).toBe(1);
  });

  it('a download slower than the grace is aborted and its job released; the process exits 0, and it is fetched again after restart', async () => {
    const dataDir = await makeDataDir();
    const env = testEnvironment(storage.origin, dataDir, { ...NO_POLLING, SHUTDOWN_GRACE: '500ms' });
    storage.setRoute('/TOO-SLOW', { kind: 'stall-mid-body', body: wav, contentType: 'audio/wav' });
    const service = await startChild(env);
    await postReady(service, 'TOO-SLOW');
    await waitFor(() => storage.requests('/TOO-SLOW') === 1 && partialDownloads(dataDir).length === 1, 'the download to be under way');

    expect(await service.kill('SIGTERM')).toBe(0);
    const messages = service.logs().map((line) => line.msg);
    expect(messages).toContain('Shutting down: stopped claiming jobs; waiting for 1 download in flight to finish (at most 0.5s)');
    expect(messages).toContain('Shutting down: 1 download still running after 0.5s; stopping it (its job runs again later)');
    expect(messages).toContain('[WaVoIP Jobs] Fetch for call TOO-SLOW interrupted (shutting down); it will run again');
    expect(partialDownloads(dataDir)).toEqual([]);
    const database = await openTestDatabase(env);
    const job = await database.get<{ locked_until: number | null }>('select locked_until from fetch_jobs where call_id = ?', ['TOO-SLOW']);
    await database.close();
    // Released, not left leased: another replica (or this one restarted) takes it at once.
    expect(job).toEqual({ locked_until: null });

    storage.setRoute('/TOO-SLOW', { kind: 'body', body: wav, contentType: 'audio/wav' });
    const restarted = await startChild(env);
    expect((await restarted.waitForAttachment('TOO-SLOW')).attachment).toMatchObject({ state: 'attached', size: wav.length });
    expect(storage.requests('/TOO-SLOW')).toBe(2);
  });
});
