import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeWavoipStorage, type FakeWavoipStorage } from '../support/fake-wavoip-storage.ts';
import { callsEventFor, openLiveStream, type LiveEvent } from '../support/live-stream.ts';
import { API_TOKEN, NO_POLLING, makeDataDir, startInProcessService, testEnvironment, type InProcessService } from '../support/service-harness.ts';
import { testDialect, withAdmin } from '../support/test-database.ts';

const mp3 = fs.readFileSync(new URL('../fixtures/audio/call-pt-br-9s.mp3', import.meta.url));
const bearer = { authorization: `Bearer ${API_TOKEN}` };

interface LiveCall {
  whatsapp_call_id: string;
  attachment: { state: string; attempts?: number };
}
const callIn = (event: LiveEvent, callId: string) => (event.data as { calls: LiveCall[] }).calls.find((call) => call.whatsapp_call_id === callId) as LiveCall;

let storage: FakeWavoipStorage;
let service: InProcessService;

beforeAll(async () => {
  storage = await startFakeWavoipStorage();
  service = await startInProcessService(testEnvironment(storage.origin, await makeDataDir(), NO_POLLING));
});
afterAll(async () => {
  await service?.stop();
  await storage?.close();
});

describe('GET /api/live', () => {
  it('is an uncached event stream that opens with a reconnect delay, for the API token or a session cookie only', async () => {
    const stream = await openLiveStream(service.url, bearer);
    try {
      expect(stream.status).toBe(200);
      expect(stream.headers.get('content-type')).toBe('text/event-stream; charset=utf-8');
      expect(stream.headers.get('cache-control')).toBe('no-store');
      expect(stream.headers.get('x-accel-buffering')).toBe('no');
      await service.postWebhook({ type: 'CALL', whatsapp_call_id: 'LIVE-OPEN', status: 'ACTIVE' });
      await stream.next(callsEventFor('LIVE-OPEN'), 'the call');
      expect(stream.retryMs()).toBe(3000);
    } finally {
      stream.close();
    }

    const signIn = await fetch(`${service.url}/api/session`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ password: API_TOKEN }) });
    const cookie = (signIn.headers.getSetCookie()[0] as string).split(';')[0] as string;
    const withCookie = await openLiveStream(service.url, { cookie });
    withCookie.close();
    expect(withCookie.status).toBe(200);

    const refused = await fetch(`${service.url}/api/live`);
    expect(refused.status).toBe(401);
  });

  it('sends a webhook\'s call to every open stream, the same event to each, as the list shows the call', async () => {
    const streams = await Promise.all([openLiveStream(service.url, bearer), openLiveStream(service.url, bearer)]);
    try {
      expect((await service.postWebhook({ type: 'CALL', action: 'CREATE', whatsapp_call_id: 'LIVE-WEBHOOK', status: 'ACTIVE', direction: 'INCOMING', caller: '5511911112222', receiver: '5511933334444', id_session: 789 })).status).toBe(200);
      const [first, second] = await Promise.all(streams.map((stream) => stream.next(callsEventFor('LIVE-WEBHOOK'), 'the webhook\'s call')));
      expect(second).toEqual(first);
      const listed = (await (await service.api('/api/calls?q=LIVE-WEBHOOK')).json()) as { calls: LiveCall[] };
      expect(callIn(first as LiveEvent, 'LIVE-WEBHOOK')).toEqual(listed.calls[0]);
      expect(callIn(first as LiveEvent, 'LIVE-WEBHOOK').attachment).toMatchObject({ state: 'pending', attempts: 0 });
    } finally {
      for (const stream of streams) stream.close();
    }
  });

  it('sends a call again once its recording is attached', async () => {
    storage.setRoute('/LIVE-ATTACH', { kind: 'body', body: mp3, contentType: 'audio/mpeg' });
    const stream = await openLiveStream(service.url, bearer);
    try {
      await service.postWebhook({ type: 'RECORD', whatsapp_call_id: 'LIVE-ATTACH', record_status: 'READY', record_url: storage.url('/LIVE-ATTACH') });
      const attached = await stream.next(callsEventFor('LIVE-ATTACH', 'attached'), 'the call attached');
      expect(callIn(attached, 'LIVE-ATTACH').attachment).toMatchObject({ state: 'attached', sha256: expect.stringMatching(/^[0-9a-f]{64}$/) });
    } finally {
      stream.close();
    }
  });

  it('sends a call when its recording fails', async () => {
    const stream = await openLiveStream(service.url, bearer);
    try {
      await service.postWebhook({ type: 'RECORD', whatsapp_call_id: 'LIVE-FAILED', record_status: 'READY', record_url: 'http://10.0.0.1/x' });
      const failed = await stream.next(callsEventFor('LIVE-FAILED', 'failed'), 'the call failed');
      expect(callIn(failed, 'LIVE-FAILED').attachment).toMatchObject({ reason: expect.stringContaining('allow-list') });
    } finally {
      stream.close();
    }
  });

  it('sends a call again when an operator\'s retry runs its attempt now, with the attempt counted', async () => {
    const stream = await openLiveStream(service.url, bearer);
    try {
      // Waiting for its recording, the first poll an hour out; the storage has none yet (404).
      await service.postWebhook({ type: 'CALL', whatsapp_call_id: 'LIVE-RETRY', status: 'ACTIVE' });
      await stream.next(callsEventFor('LIVE-RETRY', 'pending'), 'the call');
      expect((await service.api('/api/calls/LIVE-RETRY/retry', { method: 'POST' })).status).toBe(202);
      await stream.next((event) => callsEventFor('LIVE-RETRY', 'pending')(event) && callIn(event, 'LIVE-RETRY').attachment.attempts === 1, 'the attempt counted');
    } finally {
      stream.close();
    }
  });
});

describe('stopping the service', () => {
  it('ends open live streams rather than waiting for them through the shutdown grace', async () => {
    // An hour of grace: a stop that waited for the stream would outlast the test.
    const stopping = await startInProcessService(testEnvironment(storage.origin, await makeDataDir(), { ...NO_POLLING, SHUTDOWN_GRACE: '1h' }));
    const stream = await openLiveStream(stopping.url, bearer);
    await stopping.postWebhook({ type: 'CALL', whatsapp_call_id: 'LIVE-STOP', status: 'ACTIVE' });
    await stream.next(callsEventFor('LIVE-STOP'), 'the call');
    await stopping.stop();
    await stream.ended;
    await expect(stream.next(undefined, 'anything after the stop')).rejects.toThrow(/ended/);
    expect(stopping.logs().some((line) => /still open after/.test(line.msg))).toBe(false);
  });
});

describe.skipIf(testDialect !== 'postgres')('replicas sharing a PostgreSQL database', () => {
  it('a webhook taken by one replica reaches a live stream on another', async () => {
    const env = testEnvironment(storage.origin, await makeDataDir(), NO_POLLING);
    const replicaA = await startInProcessService(env);
    const replicaB = await startInProcessService({ ...env, DATA_DIR: await makeDataDir() });
    const stream = await openLiveStream(replicaB.url, bearer);
    try {
      expect((await replicaA.postWebhook({ type: 'CALL', whatsapp_call_id: 'LIVE-FLEET', status: 'ACTIVE' })).status).toBe(200);
      const event = await stream.next(callsEventFor('LIVE-FLEET'), 'the call taken by the other replica');
      expect(callIn(event, 'LIVE-FLEET').attachment.state).toBe('pending');
    } finally {
      stream.close();
      await Promise.all([replicaA.stop(), replicaB.stop()]);
    }
  });

  it('tells the streams to resync when the notification channel was lost and regained', async () => {
    const env = testEnvironment(storage.origin, await makeDataDir(), NO_POLLING);
    const replica = await startInProcessService(env);
    const stream = await openLiveStream(replica.url, bearer);
    try {
      const database = new URL(env.DATABASE_URL as string).pathname.slice(1);
      const terminated = await withAdmin(async (admin) =>
        (await admin.query(`select pg_terminate_backend(pid) from pg_stat_activity where datname = $1 and query = 'LISTEN wavoip_recordings_call_changes'`, [database])).rowCount,
      );
      expect(terminated).toBe(1);
      const event = await stream.next((each) => each.event === 'resync', 'a resync');
      expect(event.data).toEqual({});
      // Listening again: changes flow as before.
      await replica.postWebhook({ type: 'CALL', whatsapp_call_id: 'LIVE-REGAINED', status: 'ACTIVE' });
      await stream.next(callsEventFor('LIVE-REGAINED'), 'a call after the channel came back');
    } finally {
      stream.close();
      await replica.stop();
    }
  });
});
