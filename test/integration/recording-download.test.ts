import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeWavoipStorage, type FakeWavoipStorage } from '../support/fake-wavoip-storage.ts';
import { makeDataDir, startInProcessService, testEnvironment, waitFor, type InProcessService } from '../support/service-harness.ts';
import { openTestDatabase, waitForEventsApplied } from '../support/test-database.ts';
import { sha256 } from '../support/sha256.ts';

const audio = {
  mp3: fs.readFileSync(new URL('../fixtures/audio/call-pt-br-9s.mp3', import.meta.url)),
  ogg: fs.readFileSync(new URL('../fixtures/audio/call-pt-br-9s.ogg', import.meta.url)),
  wav: fs.readFileSync(new URL('../fixtures/audio/call-pt-br-9s.wav', import.meta.url)),
};

let storage: FakeWavoipStorage;
let service: InProcessService;
let env: Record<string, string>;

beforeAll(async () => {
  storage = await startFakeWavoipStorage();
  env = testEnvironment(storage.origin, await makeDataDir(), { POLL_MAX_WAIT: '3s', RECORDING_MAX_BYTES: '400KiB' });
  service = await startInProcessService(
    env,
    { httpTimeouts: { connectTimeoutMs: 1_000, headersTimeoutMs: 500, bodyTimeoutMs: 500 } },
  );
});

afterAll(async () => {
  await service?.stop();
  await storage?.close();
});

const recordingsDir = () => path.join(service.dataDir, 'recordings');

function listFiles(dir: string): string[] {
  return fs.readdirSync(dir, { recursive: true, withFileTypes: true }).filter((entry) => entry.isFile()).map((entry) => entry.name);
}

async function sendReady(callId: string, recordUrl?: string) {
  const response = await service.postWebhook({
    type: 'RECORD',
    action: 'UPDATE',
    whatsapp_call_id: callId,
    id_session: 789,
    record_status: 'READY',
    ...(recordUrl === undefined ? {} : { record_url: recordUrl }),
  });
  expect(response.status).toBe(200);
}

describe('download on READY', () => {
  it.each([
    ['mp3', 'audio/mpeg', 'MPEG'],
    ['ogg', 'audio/ogg', 'Ogg'],
    ['wav', 'audio/wav', 'WAVE'],
  ] as const)('downloads a %s recording, verifies it and attaches it', async (format, contentType, container) => {
    const callId = `READY-${format}`;
    storage.setRoute(`/${callId}`, { kind: 'body', body: audio[format], contentType });
    await sendReady(callId, storage.url(`/${callId}`));
    const call = await service.waitForAttachment(callId);
    expect(call.attachment).toMatchObject({ state: 'attached', reason: null, size: audio[format].length, sha256: sha256(audio[format]) });
    expect(call.attachment.content_type).toMatch(/^audio\//);
    expect((call.attachment as Record<string, unknown>).container).toBe(container);
    expect(call.attachment.duration_seconds).toBeGreaterThan(8);
    expect(call.attachment.duration_seconds).toBeLessThan(11);

    const download = await service.api(`/api/calls/${callId}/recording`);
    expect(download.status).toBe(200);
    expect(sha256(Buffer.from(await download.arrayBuffer()))).toBe(sha256(audio[format]));
    expect(service.logs().some((line) => line.msg === '[WaVoIP Recording Webhook] ✅ Recording attached successfully' && line.call_id === callId)).toBe(true);
  });

  it('builds the URL from WAVOIP_RECORDING_URL_TEMPLATE when the event has no record_url (the manual test)', async () => {
    storage.setRoute('/test-template', { kind: 'body', body: audio.ogg, contentType: 'audio/ogg' });
    await sendReady('test-template');
    expect((await service.waitForAttachment('test-template')).attachment.state).toBe('attached');
    expect(storage.requests('/test-template')).toBe(1);
  });

  it('retries 404 (not published yet) and 500s, then attaches', async () => {
    storage.setRoute('/FLAKY', {
      kind: 'sequence',
      first: { kind: 'status', status: 404 },
      times: 2,
      then: { kind: 'sequence', first: { kind: 'status', status: 503, headers: { 'retry-after': '0' } }, times: 1, then: { kind: 'body', body: audio.mp3, contentType: 'audio/mpeg' } },
    });
    await sendReady('FLAKY', storage.url('/FLAKY'));
    const call = await service.waitForAttachment('FLAKY');
    expect(call.attachment.state).toBe('attached');
    expect(storage.requests('/FLAKY')).toBe(4);
    const retries = service.logs().filter((line) => line.call_id === 'FLAKY' && /retrying in/.test(line.msg));
    expect(retries.map((line) => line.code)).toEqual(['NOT_FOUND', 'NOT_FOUND', 'HTTP_503']);
  });

  it.each([
    ['a truncated body', { kind: 'truncated', body: audio.ogg, contentType: 'audio/ogg' }],
    ['a reset mid-body', { kind: 'reset', body: audio.ogg, contentType: 'audio/ogg' }],
    ['a stall after the headers', { kind: 'stall-after-headers', contentType: 'audio/ogg' }],
    ['a stall mid-body', { kind: 'stall-mid-body', body: audio.ogg, contentType: 'audio/ogg' }],
    ['an HTML page served with 200', { kind: 'body', body: Buffer.from('<!doctype html><html><body>Error</body></html>'), contentType: 'text/html' }],
    ['a 0-byte body', { kind: 'body', body: Buffer.alloc(0), contentType: 'audio/ogg' }],
  ] as const)('retries after %s and never attaches a bad file', async (_name, fault) => {
    const callId = `FAULT-${Math.random().toString(36).slice(2, 8)}`;
    storage.setRoute(`/${callId}`, { kind: 'sequence', first: fault, times: 1, then: { kind: 'body', body: audio.ogg, contentType: 'audio/ogg' } });
    await sendReady(callId, storage.url(`/${callId}`));
    const call = await service.waitForAttachment(callId);
    expect(call.attachment).toMatchObject({ state: 'attached', sha256: sha256(audio.ogg), size: audio.ogg.length });
    expect(storage.requests(`/${callId}`)).toBe(2);
  });

  it('fails with the reason once retries run past POLL_MAX_WAIT', async () => {
    storage.setRoute('/ALWAYS-HTML', { kind: 'body', body: Buffer.from('<html><body>not here</body></html>'), contentType: 'text/html' });
    await sendReady('ALWAYS-HTML', storage.url('/ALWAYS-HTML'));
    const call = await service.waitForAttachment('ALWAYS-HTML');
    expect(call.attachment.state).toBe('failed');
    expect(call.attachment.reason).toMatch(/not available in time/);
    expect(call.attachment.reason).toMatch(/html/i);
    expect(storage.requests('/ALWAYS-HTML')).toBeGreaterThan(2);
  });

  it('fails at once, without retrying, when the body is over RECORDING_MAX_BYTES', async () => {
    storage.setRoute('/HUGE', { kind: 'body', body: Buffer.concat([audio.wav, audio.wav]), contentType: 'audio/wav' });
    await sendReady('HUGE', storage.url('/HUGE'));
    const call = await service.waitForAttachment('HUGE');
    expect(call.attachment.state).toBe('failed');
    expect(call.attachment.reason).toMatch(/larger|too large|limit/i);
    expect(storage.requests('/HUGE')).toBe(1);
  });

  it('fails an endless body without Content-Length at the size cap', async () => {
    storage.setRoute('/ENDLESS', { kind: 'endless', head: audio.ogg.subarray(0, 4096), contentType: 'audio/ogg' });
    await sendReady('ENDLESS', storage.url('/ENDLESS'));
    const call = await service.waitForAttachment('ENDLESS');
    expect(call.attachment.state).toBe('failed');
    expect(call.attachment.reason).toMatch(/larger|too large|limit/i);
  });

  it('refuses a record_url whose host is not allow-listed, and says so', async () => {
    await sendReady('SSRF-HOST', 'http://169.254.169.254/latest/meta-data/');
    const call = await service.waitForAttachment('SSRF-HOST');
    expect(call.attachment.state).toBe('failed');
    expect(call.attachment.reason).toMatch(/allow/i);
    expect(service.logs().some((line) => line.call_id === 'SSRF-HOST' && line.level === 50)).toBe(true);
  });

  it('refuses a redirect to a private address', async () => {
    const inner = await startFakeWavoipStorage();
    try {
      inner.setRoute('/secret', { kind: 'body', body: audio.ogg, contentType: 'audio/ogg' });
      storage.setRoute('/REDIRECT-PRIVATE', { kind: 'redirect', location: inner.url('/secret') });
      await sendReady('REDIRECT-PRIVATE', storage.url('/REDIRECT-PRIVATE'));
      const call = await service.waitForAttachment('REDIRECT-PRIVATE');
      expect(call.attachment.state).toBe('failed');
      expect(inner.requests('/secret')).toBe(0);
    } finally {
      await inner.close();
    }
  });

  it('leaves no partial or temporary file behind after all of the above', () => {
    expect(listFiles(path.join(recordingsDir(), '.tmp'))).toEqual([]);
  });
});

describe('exactly one attachment per call', () => {
  it('downloads once however many duplicate READY events arrive at once', async () => {
    storage.setRoute('/DUP-READY', { kind: 'body', body: audio.mp3, contentType: 'audio/mpeg' });
    const responses = await Promise.all(
      Array.from({ length: 25 }, () =>
        service.postWebhook({ type: 'RECORD', whatsapp_call_id: 'DUP-READY', record_status: 'READY', record_url: storage.url('/DUP-READY') }),
      ),
    );
    expect(responses.every((response) => response.status === 200)).toBe(true);
    const call = await service.waitForAttachment('DUP-READY');
    // Every duplicate applied, not only the first (on PostgreSQL the rest may still be queued).
    await waitForEventsApplied(env);
    expect(call.attachment.state).toBe('attached');
    expect(storage.requests('/DUP-READY')).toBe(1);
    expect(service.logs().filter((line) => line.call_id === 'DUP-READY' && line.msg.includes('✅'))).toHaveLength(1);
    expect(listFiles(recordingsDir()).filter((name) => name.startsWith('DUP-READY'))).toHaveLength(1);
  });
});

describe('more due downloads than DOWNLOAD_CONCURRENCY', () => {
  it('runs them all, one slot at a time', async () => {
    const narrow = await startInProcessService(testEnvironment(storage.origin, await makeDataDir(), { DOWNLOAD_CONCURRENCY: '1' }));
    try {
      const callIds = Array.from({ length: 6 }, (_, index) => `NARROW-${index}`);
      for (const callId of callIds) storage.setRoute(`/${callId}`, { kind: 'body', body: audio.ogg, contentType: 'audio/ogg' });
      await Promise.all(
        callIds.map((callId) => narrow.postWebhook({ type: 'RECORD', whatsapp_call_id: callId, record_status: 'READY', record_url: storage.url(`/${callId}`) })),
      );
      for (const callId of callIds) expect((await narrow.waitForAttachment(callId)).attachment.state).toBe('attached');
    } finally {
      await narrow.stop();
    }
  });
});

describe('a job made again while its old attempt still runs', () => {
  it('waits for the old attempt, then downloads once', async () => {
    storage.setRoute('/REMADE', { kind: 'sequence', first: { kind: 'stall-after-headers', contentType: 'audio/ogg' }, times: 1, then: { kind: 'body', body: audio.ogg, contentType: 'audio/ogg' } });
    await service.postWebhook({ type: 'CALL', whatsapp_call_id: 'REMADE', status: 'ACTIVE' });
    await service.postWebhook({ type: 'CALL', whatsapp_call_id: 'REMADE', status: 'ENDED', duration: 20 });
    await waitFor(() => storage.requests('/REMADE') === 1, 'the poll to be in flight');
    // The job is deleted (DISABLED) and made again (READY) while the poll still hangs.
    await service.postWebhook({ type: 'RECORD', whatsapp_call_id: 'REMADE', record_status: 'DISABLED' });
    await service.waitForAttachment('REMADE', 'disabled');
    await service.postWebhook({ type: 'RECORD', whatsapp_call_id: 'REMADE', record_status: 'READY' });
    await waitForEventsApplied(env); // READY takes the call from disabled back to pending
    const call = await service.waitForAttachment('REMADE');
    expect(call.attachment).toMatchObject({ state: 'attached', sha256: sha256(audio.ogg) });
    expect(storage.requests('/REMADE')).toBe(2);
    const lines = service.logs().filter((line) => line.call_id === 'REMADE').map((line) => line.msg);
    // The old attempt ends on its own (its stalled body times out) or is stopped at the next lease
    // renewal (its job is gone): whichever comes first, it ends before the download starts.
    const pollEnded = lines.findIndex(
      (msg) => msg.includes('not available yet') || msg.includes('Could not check for the recording') || msg.includes('interrupted (its lease is gone'),
    );
    const downloadStarted = lines.findIndex((msg) => msg.startsWith('[WaVoIP Recording Webhook] Downloading'));
    expect(pollEnded).toBeGreaterThanOrEqual(0);
    expect(downloadStarted).toBeGreaterThan(pollEnded);
  });
});

describe('statuses that end the wait', () => {
  it.each([
    ['EMPTY_RECORDING', 'empty'],
    ['DISABLED', 'disabled'],
  ])('%s → %s, with no download', async (status, state) => {
    // The only download slot held by another call: a fetch job for this one, were one made, would
    // wait in the table (and be seen there) instead of running and being dropped at once.
    const slotEnv = testEnvironment(storage.origin, await makeDataDir(), { DOWNLOAD_CONCURRENCY: '1' });
    const narrow = await startInProcessService(slotEnv);
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    try {
      const holder = `HOLD-${status}`;
      storage.setRoute(`/${holder}`, { kind: 'held', until: released, then: { kind: 'body', body: audio.ogg, contentType: 'audio/ogg' } });
      await narrow.postWebhook({ type: 'RECORD', whatsapp_call_id: holder, record_status: 'READY', record_url: storage.url(`/${holder}`) });
      await waitFor(() => storage.requests(`/${holder}`) === 1, 'the only download slot to be taken');

      const callId = `END-${status}`;
      // The RECORD first: the call's end, coming after it, must not start a poll either.
      await narrow.postWebhook({ type: 'RECORD', whatsapp_call_id: callId, record_status: status, record_url: '' });
      await narrow.postWebhook({ type: 'CALL', whatsapp_call_id: callId, status: 'ENDED', duration: 2, direction: 'INCOMING' });
      await waitForEventsApplied(slotEnv);
      const call = await narrow.call(callId);
      expect(call.attachment.state).toBe(state);
      expect(call.events).toHaveLength(2);
      // Nothing scheduled to ask the storage, and, once the slot is free, nothing asked of it.
      const db = await openTestDatabase(slotEnv);
      try {
        expect(await db.all('select call_id from fetch_jobs')).toEqual([{ call_id: holder }]);
      } finally {
        await db.close();
      }
      release();
      await narrow.waitForAttachment(holder, 'attached');
      expect(storage.requests(`/${callId}`)).toBe(0);
      expect((await narrow.call(callId)).attachment.state).toBe(state);
    } finally {
      release();
      await narrow.stop();
    }
  });
});
