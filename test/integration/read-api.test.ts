import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeWavoipStorage, type FakeWavoipStorage } from '../support/fake-wavoip-storage.ts';
import { NO_POLLING, makeDataDir, startInProcessService, testEnvironment, waitFor, type InProcessService } from '../support/service-harness.ts';

const mp3 = fs.readFileSync(new URL('../fixtures/audio/call-pt-br-9s.mp3', import.meta.url));

let storage: FakeWavoipStorage;
let service: InProcessService;
const eventIds: Record<string, string[]> = {};

async function post(body: Record<string, unknown>): Promise<void> {
  const response = await service.postWebhook(body);
  expect(response.status).toBe(200);
  const callId = String(body.whatsapp_call_id);
  (eventIds[callId] ??= []).push(((await response.json()) as { event_id: string }).event_id);
}

beforeAll(async () => {
  storage = await startFakeWavoipStorage();
  service = await startInProcessService(testEnvironment(storage.origin, await makeDataDir(), NO_POLLING));
  storage.setRoute('/API-ATTACHED', { kind: 'body', body: mp3, contentType: 'audio/mpeg' });
  // Five calls, one after another so that "newest first" has a meaning.
  await post({ type: 'CALL', action: 'CREATE', whatsapp_call_id: 'API-ATTACHED', status: 'ACTIVE', direction: 'INCOMING', caller: '5511911112222', receiver: '5511933334444', id_session: 789 });
  await post({ type: 'CALL', action: 'UPDATE', whatsapp_call_id: 'API-ATTACHED', status: 'ENDED', duration: 45, record_status: 'MIXING' });
  await post({ type: 'RECORD', action: 'UPDATE', whatsapp_call_id: 'API-ATTACHED', record_status: 'READY', record_url: storage.url('/API-ATTACHED') });
  await service.waitForAttachment('API-ATTACHED', 'attached');
  for (const callId of ['API-PENDING-1', 'API-PENDING-2']) {
    await post({ type: 'CALL', whatsapp_call_id: callId, status: 'ACTIVE' });
    await waitFor(async () => (await service.api(`/api/calls/${callId}`)).status === 200, callId);
  }
  await post({ type: 'RECORD', whatsapp_call_id: 'API-FAILED', record_status: 'READY', record_url: 'http://10.0.0.1/x' });
  await service.waitForAttachment('API-FAILED', 'failed');
  await post({ type: 'RECORD', whatsapp_call_id: 'API-EMPTY', record_status: 'EMPTY_RECORDING' });
  await service.waitForAttachment('API-EMPTY', 'empty');
});

afterAll(async () => {
  await service?.stop();
  await storage?.close();
});

describe('authentication', () => {
  it.each([
    ['no token', {}],
    ['a wrong token', { authorization: 'Bearer not-the-token' }],
    ['another scheme', { authorization: 'Basic dGVzdA==' }],
  ])('answers 401 to %s', async (_name, headers) => {
    for (const path of ['/api/calls', '/api/calls/API-ATTACHED', '/api/calls/API-ATTACHED/recording']) {
      const response = await fetch(`${service.url}${path}`, { headers });
      expect(response.status).toBe(401);
      expect(((await response.json()) as { error: string }).error).toMatch(/API token/);
    }
    expect((await fetch(`${service.url}/api/calls/API-FAILED/retry`, { method: 'POST', headers })).status).toBe(401);
  });

  it('serves /healthz and /readyz without a token', async () => {
    expect(await (await fetch(`${service.url}/healthz`)).json()).toEqual({ status: 'ok' });
    expect(await (await fetch(`${service.url}/readyz`)).json()).toEqual({ status: 'ready', database: 'ok', storage: 'ok' });
  });

  it('answers /readyz 200 "degraded" while the recording storage cannot be written: webhooks are still taken', async () => {
    const other = await startInProcessService(testEnvironment(storage.origin, await makeDataDir()));
    const tmpDir = path.join(other.dataDir, 'recordings', '.tmp');
    try {
      fs.rmSync(tmpDir, { recursive: true });
      fs.writeFileSync(tmpDir, 'not a directory');
      const broken = await fetch(`${other.url}/readyz`);
      expect(broken.status).toBe(200);
      expect(await broken.json()).toEqual({ status: 'degraded', database: 'ok', storage: 'unavailable' });
      expect((await other.postWebhook({ type: 'CALL', whatsapp_call_id: 'DEGRADED', status: 'ACTIVE' })).status).toBe(200);
      expect(other.logs().some((line) => /Readiness check failed: recording storage/.test(line.msg))).toBe(true);

      fs.rmSync(tmpDir);
      fs.mkdirSync(tmpDir);
      expect(await (await fetch(`${other.url}/readyz`)).json()).toMatchObject({ status: 'ready' });
    } finally {
      await other.stop();
    }
  });
});

describe('GET /api/calls', () => {
  it('lists calls newest first', async () => {
    const body = (await (await service.api('/api/calls')).json()) as { calls: { whatsapp_call_id: string }[]; next_cursor: string | null };
    expect(body.calls.map((call) => call.whatsapp_call_id)).toEqual(['API-EMPTY', 'API-FAILED', 'API-PENDING-2', 'API-PENDING-1', 'API-ATTACHED']);
    expect(body.next_cursor).toBeNull();
  });

  it('pages with a cursor without skipping or repeating a call', async () => {
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const query: string = cursor ? `?limit=2&cursor=${cursor}` : '?limit=2';
      const page = (await (await service.api(`/api/calls${query}`)).json()) as { calls: { whatsapp_call_id: string }[]; next_cursor: string | null };
      seen.push(...page.calls.map((call) => call.whatsapp_call_id));
      cursor = page.next_cursor;
      pages += 1;
    } while (cursor !== null);
    expect(pages).toBe(3);
    expect(seen).toEqual(['API-EMPTY', 'API-FAILED', 'API-PENDING-2', 'API-PENDING-1', 'API-ATTACHED']);
  });

  it('filters by attachment state', async () => {
    const ids = async (state: string) =>
      ((await (await service.api(`/api/calls?state=${state}`)).json()) as { calls: { whatsapp_call_id: string }[] }).calls.map((call) => call.whatsapp_call_id);
    expect(await ids('pending')).toEqual(['API-PENDING-2', 'API-PENDING-1']);
    expect(await ids('failed')).toEqual(['API-FAILED']);
    expect(await ids('attached')).toEqual(['API-ATTACHED']);
    expect(await ids('disabled')).toEqual([]);
  });

  it.each([
    ['limit=0', /limit/],
    ['limit=201', /limit/],
    ['limit=abc', /limit/],
    ['state=lost', /state/],
    ['cursor=not-a-cursor', /cursor/],
    ['colour=red', /colour|additional/],
  ])('refuses %s with a 400 naming the parameter', async (query, message) => {
    const response = await service.api(`/api/calls?${query}`);
    expect(response.status).toBe(400);
    expect(((await response.json()) as { error: string }).error).toMatch(message);
  });
});

describe('GET /api/calls/:id', () => {
  it('shows the call fields, the attachment and the timeline with event ids', async () => {
    const call = (await service.call('API-ATTACHED')) as unknown as Record<string, unknown> & {
      attachment: Record<string, unknown>;
      events: { event_id: string }[];
    };
    expect(call).toMatchObject({
      whatsapp_call_id: 'API-ATTACHED',
      direction: 'incoming',
      direction_raw: 'INCOMING',
      outcome: 'answered',
      peer_phone: '+5511911112222',
      peer_phone_raw: '5511911112222',
      device_phone: '+5511933334444',
      device_phone_raw: '5511933334444',
      caller: '5511911112222',
      receiver: '5511933334444',
      id_session: '789',
      status: 'ENDED',
      duration: 45,
      record_status: 'READY',
      record_url: storage.url('/API-ATTACHED'),
    });
    expect(call.attachment).toMatchObject({ state: 'attached', reason: null, size: mp3.length, content_type: 'audio/mpeg' });
    expect(Date.parse(call.attachment.attached_at as string)).not.toBeNaN();
    expect(call.events.map((event) => event.event_id)).toEqual(eventIds['API-ATTACHED']);
  });

  it('answers a JSON 404 for an unknown call', async () => {
    const response = await service.api('/api/calls/NOPE');
    expect(response.status).toBe(404);
    expect(((await response.json()) as { error: string }).error).toMatch(/NOPE/);
  });
});

describe('GET /api/calls/:id/recording', () => {
  it('serves the audio with its content type', async () => {
    const response = await service.api('/api/calls/API-ATTACHED/recording');
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('audio/mpeg');
    expect(response.headers.get('accept-ranges')).toBe('bytes');
    expect(Buffer.from(await response.arrayBuffer()).equals(mp3)).toBe(true);
  });

  it.each([
    ['bytes=0-99', 0, 99],
    ['bytes=1000-', 1000, mp3.length - 1],
    ['bytes=-500', mp3.length - 500, mp3.length - 1],
  ])('answers Range %s with 206 and exactly those bytes', async (range, start, end) => {
    const response = await service.api('/api/calls/API-ATTACHED/recording', { headers: { range } });
    expect(response.status).toBe(206);
    expect(response.headers.get('content-range')).toBe(`bytes ${start}-${end}/${mp3.length}`);
    expect(Buffer.from(await response.arrayBuffer()).equals(mp3.subarray(start, end + 1))).toBe(true);
  });

  it('answers 416 to a range past the end', async () => {
    const response = await service.api('/api/calls/API-ATTACHED/recording', { headers: { range: `bytes=${mp3.length + 10}-` } });
    expect(response.status).toBe(416);
    expect(response.headers.get('content-range')).toBe(`bytes */${mp3.length}`);
  });

  it('answers a JSON 404 when there is no recording', async () => {
    for (const callId of ['API-PENDING-1', 'API-EMPTY', 'NOPE']) {
      const response = await service.api(`/api/calls/${callId}/recording`);
      expect(response.status).toBe(404);
      expect(response.headers.get('content-type')).toMatch(/application\/json/);
    }
  });
});

describe('POST /api/calls/:id/retry', () => {
  it('refuses a call with no recording left to fetch, and an unknown one', async () => {
    const attached = await service.api('/api/calls/API-ATTACHED/retry', { method: 'POST' });
    expect(attached.status).toBe(409);
    expect(await attached.json()).toEqual({ error: 'call API-ATTACHED is attached; only a failed or pending recording can be retried' });
    expect((await service.api('/api/calls/API-EMPTY/retry', { method: 'POST' })).status).toBe(409);
    expect((await service.api('/api/calls/NOPE/retry', { method: 'POST' })).status).toBe(404);
  });

  it('puts a failed call back to pending and fetches it again', async () => {
    storage.setRoute('/GAVE-UP', { kind: 'status', status: 403 });
    await post({ type: 'RECORD', whatsapp_call_id: 'GAVE-UP', record_status: 'READY', record_url: storage.url('/GAVE-UP') });
    expect((await service.waitForAttachment('GAVE-UP', 'failed')).attachment.reason).toMatch(/403/);

    storage.setRoute('/GAVE-UP', { kind: 'body', body: mp3, contentType: 'audio/mpeg' });
    const response = await service.api('/api/calls/GAVE-UP/retry', { method: 'POST' });
    expect(response.status).toBe(202);
    expect(((await response.json()) as { attachment: { state: string } }).attachment.state).toBe('pending');
    expect((await service.waitForAttachment('GAVE-UP')).attachment.state).toBe('attached');
  });
});
