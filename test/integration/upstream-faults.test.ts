/**
 * The upstream fault matrix: every way storage.wavoip.com can misbehave, played by a loopback
 * fake storage against the real service (webhook → event processor → scheduler → download →
 * store → API), with the real audio of test/fixtures/audio. Each case shows the outcome the
 * operator sees on GET /api/calls/:id: retried then attached, or failed with a precise reason.
 * docs/upstream-faults.md is this file as a table; keep the two in step.
 *
 * No case asserts how long anything took. Retry-After is checked through the fetch job's
 * `next_attempt_at` against when the storage saw the request and when the service logged the
 * failure, both taken from the same process clock.
 */
import { pbkdf2 } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeWavoipStorage, type FakeBehaviour, type FakeWavoipStorage } from '../support/fake-wavoip-storage.ts';
import { makeDataDir, startInProcessService, testEnvironment, waitFor, type CallView, type InProcessService } from '../support/service-harness.ts';
import { freePort } from '../support/free-port.ts';
import { sha256 } from '../support/sha256.ts';

const audio = {
  mp3: fs.readFileSync(new URL('../fixtures/audio/call-pt-br-9s.mp3', import.meta.url)),
  ogg: fs.readFileSync(new URL('../fixtures/audio/call-pt-br-9s.ogg', import.meta.url)),
  wav: fs.readFileSync(new URL('../fixtures/audio/call-pt-br-9s.wav', import.meta.url)),
};
const html = Buffer.from('<!DOCTYPE html><html><head><title>Not Found</title></head><body><h1>Recording not published</h1></body></html>');
const half = (bytes: Buffer) => Math.floor(bytes.length / 2);
const good: FakeBehaviour = { kind: 'body', body: audio.ogg, contentType: 'audio/ogg' };

/** Short client timeouts so that stalls end quickly; nothing below measures them. */
const HTTP_TIMEOUTS = { connectTimeoutMs: 1_000, headersTimeoutMs: 500, bodyTimeoutMs: 500 };
/** RECORDING_MAX_BYTES: exactly the WAV fixture, so the boundary itself is tested. */
const CAP = audio.wav.length;

const RETRY_LOG = /retrying in|next poll in/;
/** A body cut short (the fake storage sends exactly half the Ogg fixture), by a reset or a close. */
const RESET_REASON = `Recording body truncated: received ${half(audio.ogg)} bytes, then the connection ended before the body did (other side closed)`;
const TRUNCATED_REASON = `Recording body truncated: received ${half(audio.ogg)} of ${audio.ogg.length} bytes (other side closed)`;
const ATTEMPT_LOG = /^\[WaVoIP (Recording Webhook\] Downloading|Poll\] Checking)/;

/**
 * Keeps every libuv pool thread of this process (the service's too) busy for a moment, the way
 * a burst of fsyncs does: file operations queue behind it. Nothing waits for it to finish.
 */
function occupyThreadPool(): void {
  const threads = Number(process.env.UV_THREADPOOL_SIZE ?? 4);
  for (let thread = 0; thread < threads; thread++) pbkdf2('busy', 'pool', 100_000, 64, 'sha512', () => {});
}

/** A call that ended without READY: the backup poller fetches the template URL. */
async function sendEndedCall(service: InProcessService, callId: string): Promise<void> {
  for (const event of [
    { type: 'CALL', action: 'CREATE', whatsapp_call_id: callId, status: 'ACTIVE', direction: 'INCOMING', caller: '5511911112222' },
    { type: 'CALL', action: 'UPDATE', whatsapp_call_id: callId, status: 'ENDED', duration: 42 },
  ]) {
    expect((await service.postWebhook(event)).status).toBe(200);
  }
}

/**
 * Waits for the call's attachment to leave `pending` (or reach `state`). On a timeout the error
 * carries what the API answered and the call's log, so a hang can be told from a slow retry.
 */
async function settled(service: InProcessService, callId: string, state?: string): Promise<CallView> {
  try {
    return await service.waitForAttachment(callId, state);
  } catch (error) {
    const response = await service.api(`/api/calls/${encodeURIComponent(callId)}`).catch((e: unknown) => e);
    const answer = response instanceof Response ? `${response.status} ${(await response.text()).slice(0, 600)}` : String(response);
    const log = service.logsFor(callId).map((line) => `${line.time as number} ${line.msg}`);
    const tail = service.logs().slice(-10).map((line) => `${line.time as number} ${line.msg}`);
    throw new Error(`${(error as Error).message}\nGET /api/calls/${callId}: ${answer}\ncall log:\n  ${log.join('\n  ')}\nlast service log lines:\n  ${tail.join('\n  ')}`);
  }
}

/** Attempts the service started for the call, by its own log. */
const attemptsLogged = (service: InProcessService, callId: string) => service.logsFor(callId).filter((line) => ATTEMPT_LOG.test(line.msg)).length;
const retriesLogged = (service: InProcessService, callId: string) => service.logsFor(callId).filter((line) => RETRY_LOG.test(line.msg));

function listFiles(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  // Recursive: each process writes its temp files in an area of its own under .tmp.
  return fs.readdirSync(dir, { recursive: true, withFileTypes: true }).filter((entry) => entry.isFile()).map((entry) => entry.name);
}

/** No partial download left in .tmp, and exactly one stored file per attached call. */
async function expectNoLeftovers(service: InProcessService): Promise<void> {
  const recordings = path.join(service.dataDir, 'recordings');
  expect(listFiles(path.join(recordings, '.tmp'))).toEqual([]);
  const response = await service.api('/api/calls?state=attached&limit=200');
  const { calls } = (await response.json()) as { calls: unknown[] };
  expect(listFiles(recordings)).toHaveLength(calls.length);
}

// ---------------------------------------------------------------------------------------------
// A service with a long POLL_MAX_WAIT: transient faults are retried until the recording comes;
// faults that retrying cannot fix fail at the first attempt.
// ---------------------------------------------------------------------------------------------
describe('POLL_MAX_WAIT 60s: retried then attached, or failed at once', () => {
  let storage: FakeWavoipStorage;
  /** A second loopback server that is NOT allow-listed: the target of hostile redirects. */
  let inner: FakeWavoipStorage;
  let service: InProcessService;
  let refusedPort: number;

  beforeAll(async () => {
    storage = await startFakeWavoipStorage();
    inner = await startFakeWavoipStorage();
    inner.setRoute('/secret', { kind: 'body', body: audio.ogg, contentType: 'audio/ogg' });
    refusedPort = await freePort();
    const allowlist = [new URL(storage.origin).host, `127.0.0.1:${refusedPort}`, 'localhost'].join(',');
    service = await startInProcessService(
      testEnvironment(storage.origin, await makeDataDir(), {
        RECORDING_URL_ALLOWLIST: allowlist,
        RECORDING_MAX_BYTES: String(CAP),
        POLL_INITIAL_DELAY: '50ms',
        POLL_MAX_DELAY: '200ms',
        POLL_MAX_WAIT: '60s',
      }),
      { httpTimeouts: HTTP_TIMEOUTS },
    );
  });

  afterAll(async () => {
    await service?.stop();
    await storage?.close();
    await inner?.close();
  });

  interface TransientCase {
    fault: string;
    behaviour: FakeBehaviour;
    /** How many times the storage misbehaves before it serves the recording. */
    times: number;
    code: string;
    /** The attempt's error, as logged with each retry and shown as `last_error`. */
    reason: string;
  }

  const transient: TransientCase[] = [
    { fault: '404 for a long time', behaviour: { kind: 'status', status: 404 }, times: 8, code: 'NOT_FOUND', reason: 'Recording not found (HTTP 404): not published yet, or deleted' },
    { fault: '500', behaviour: { kind: 'status', status: 500 }, times: 2, code: 'HTTP_500', reason: 'Recording request answered HTTP 500' },
    { fault: '502', behaviour: { kind: 'status', status: 502 }, times: 2, code: 'HTTP_502', reason: 'Recording request answered HTTP 502' },
    { fault: '503', behaviour: { kind: 'status', status: 503 }, times: 2, code: 'HTTP_503', reason: 'Recording request answered HTTP 503' },
    { fault: '429 without Retry-After', behaviour: { kind: 'status', status: 429 }, times: 2, code: 'HTTP_429', reason: 'Recording request answered HTTP 429' },
    { fault: 'reset mid-body', behaviour: { kind: 'reset', body: audio.ogg, contentType: 'audio/ogg' }, times: 2, code: 'TRUNCATED', reason: RESET_REASON },
    { fault: 'stall before headers', behaviour: { kind: 'stall-before-headers' }, times: 1, code: 'TIMEOUT', reason: 'Recording download timed out: Headers Timeout Error' },
    { fault: 'stall after headers', behaviour: { kind: 'stall-after-headers', contentType: 'audio/ogg' }, times: 1, code: 'TIMEOUT', reason: 'Recording download timed out: Body Timeout Error' },
    { fault: 'stall mid-body', behaviour: { kind: 'stall-mid-body', body: audio.ogg, contentType: 'audio/ogg' }, times: 1, code: 'TIMEOUT', reason: 'Recording download timed out: Body Timeout Error' },
    {
      fault: 'truncated body (Content-Length, then the socket closes)',
      behaviour: { kind: 'truncated', body: audio.ogg, contentType: 'audio/ogg' },
      times: 2,
      code: 'TRUNCATED',
      reason: TRUNCATED_REASON,
    },
    { fault: 'HTML with 200', behaviour: { kind: 'body', body: html, contentType: 'text/html' }, times: 2, code: 'NOT_AUDIO', reason: 'Recording body is text/html, not audio' },
    { fault: 'HTML with 200 labelled audio/ogg', behaviour: { kind: 'body', body: html, contentType: 'audio/ogg' }, times: 1, code: 'NOT_AUDIO', reason: 'Recording body is text/html, not audio' },
    { fault: 'endless HTML without Content-Length', behaviour: { kind: 'endless', head: html, contentType: 'text/html' }, times: 1, code: 'NOT_AUDIO', reason: 'Recording body is text/html, not audio' },
    { fault: '0 bytes (Content-Length: 0)', behaviour: { kind: 'body', body: Buffer.alloc(0), contentType: 'audio/ogg' }, times: 2, code: 'EMPTY_BODY', reason: 'Recording body is empty' },
    { fault: '0 bytes, chunked', behaviour: { kind: 'body', body: Buffer.alloc(0), contentType: 'audio/ogg', chunked: true }, times: 1, code: 'EMPTY_BODY', reason: 'Recording body is empty' },
  ];

  describe.concurrent('retried, then attached', () => {
    it.for(transient.map((row, index) => ({ ...row, callId: `TRANSIENT-${index}` })))(
      '$fault ×$times → retried, then attached',
      async ({ behaviour, times, code, reason, callId }, { expect }) => {
        storage.setRoute(`/${callId}`, { kind: 'sequence', first: behaviour, times, then: good });
        await service.postReady(callId, storage.url(`/${callId}`));
        const call = await settled(service, callId);

        expect(call.attachment).toMatchObject({ state: 'attached', reason: null, size: audio.ogg.length, sha256: sha256(audio.ogg) });
        expect(storage.requests(`/${callId}`)).toBe(times + 1);
        expect(attemptsLogged(service, callId)).toBe(times + 1);
        const retries = retriesLogged(service, callId);
        expect(retries).toHaveLength(times);
        expect(retries.map((line) => ({ code: line.code, reason: line.reason }))).toEqual(Array(times).fill({ code, reason }));
      },
    );
  });

  it('shows the 404 on the call while it waits (attempts, next_attempt_at, give_up_at, last_error)', async () => {
    const callId = 'LATE-404-VISIBLE';
    storage.setRoute(`/${callId}`, { kind: 'sequence', first: { kind: 'status', status: 404 }, times: 10, then: good });
    await service.postReady(callId, storage.url(`/${callId}`));
    let waiting: CallView['attachment'] | undefined;
    await waitFor(async () => {
      waiting = (await service.call(callId)).attachment;
      return (waiting.attempts ?? 0) >= 3 && waiting.state === 'pending';
    }, 'three failed attempts while pending');
    expect(waiting).toMatchObject({ state: 'pending', reason: null, last_error: 'Recording not found (HTTP 404): not published yet, or deleted' });
    expect(Date.parse(waiting?.next_attempt_at ?? '')).toBeLessThanOrEqual(Date.parse(waiting?.give_up_at ?? ''));

    const call = await settled(service, callId);
    expect(call.attachment).toMatchObject({ state: 'attached', sha256: sha256(audio.ogg) });
    expect(storage.requests(`/${callId}`)).toBe(11);
    expect(call.attachment.attempts).toBeUndefined();
  });

  it('404 for a long time while polling without READY → polled, then attached', async () => {
    const callId = 'POLL-LATE-404';
    storage.setRoute(`/${callId}`, { kind: 'sequence', first: { kind: 'status', status: 404 }, times: 6, then: { kind: 'body', body: audio.mp3, contentType: 'audio/mpeg' } });
    await sendEndedCall(service, callId);
    const call = await settled(service, callId);
    expect(call.record_status).toBeNull();
    expect(call.attachment).toMatchObject({ state: 'attached', sha256: sha256(audio.mp3), content_type: 'audio/mpeg' });
    expect(storage.requests(`/${callId}`)).toBe(7);
    const polls = retriesLogged(service, callId);
    expect(polls).toHaveLength(6);
    const expected = `[WaVoIP Poll] Recording for call ${callId} not available yet (Recording not found (HTTP 404): not published yet, or deleted); next poll in `;
    for (const line of polls) expect(line.msg.startsWith(expected)).toBe(true);
  });

  it('connection refused (an allow-listed port nothing listens on) → retried, then attached once the storage is up', async () => {
    const callId = 'REFUSED-THEN-UP';
    await service.postReady(callId, `http://127.0.0.1:${refusedPort}/${callId}`);
    let waiting: CallView['attachment'] | undefined;
    await waitFor(async () => {
      waiting = (await service.call(callId)).attachment;
      return (waiting.attempts ?? 0) >= 2;
    }, 'two refused attempts');
    expect(waiting).toMatchObject({ state: 'pending', last_error: `could not reach 127.0.0.1:${refusedPort}: connection refused` });
    const retries = retriesLogged(service, callId);
    expect(retries.length).toBeGreaterThanOrEqual(2);
    // Something for the operator to look at, not a recording "not published yet".
    for (const line of retries) expect(line).toMatchObject({ code: 'CONNECTION_REFUSED', level: 40 });

    const late = await startFakeWavoipStorage({ port: refusedPort });
    try {
      late.setRoute(`/${callId}`, { kind: 'body', body: audio.wav, contentType: 'audio/wav' });
      const call = await settled(service, callId);
      expect(call.attachment).toMatchObject({ state: 'attached', sha256: sha256(audio.wav), size: audio.wav.length });
      expect(late.requests(`/${callId}`)).toBe(1);
      expect(attemptsLogged(service, callId)).toBe(retriesLogged(service, callId).length + 1);
    } finally {
      await late.close();
    }
  });

  // Real audio under a wrong, generic or missing Content-Type is still the recording: attached,
  // with the content type the bytes show, and served back with it.
  describe.concurrent('wrong or missing Content-Type with real audio bytes', () => {
    const rows: { served: string; bytes: Buffer; contentType: string | null; chunked?: boolean; expected: string }[] = [
      { served: 'Ogg as application/octet-stream', bytes: audio.ogg, contentType: 'application/octet-stream', expected: 'audio/ogg' },
      { served: 'Ogg as audio/mpeg (another audio format)', bytes: audio.ogg, contentType: 'audio/mpeg', expected: 'audio/ogg' },
      { served: 'MP3 as text/html', bytes: audio.mp3, contentType: 'text/html; charset=utf-8', expected: 'audio/mpeg' },
      { served: 'MP3 as video/mp4', bytes: audio.mp3, contentType: 'video/mp4', expected: 'audio/mpeg' },
      { served: 'WAV with no Content-Type', bytes: audio.wav, contentType: null, expected: 'audio/wav' },
      { served: 'Ogg with no Content-Type, chunked', bytes: audio.ogg, contentType: null, chunked: true, expected: 'audio/ogg' },
      { served: 'WAV of exactly RECORDING_MAX_BYTES, correctly labelled', bytes: audio.wav, contentType: 'audio/wav', expected: 'audio/wav' },
    ];
    it.for(rows.map((row, index) => ({ ...row, callId: `CTYPE-${index}` })))(
      '$served → attached as $expected',
      async ({ bytes, contentType, chunked, expected, callId }, { expect }) => {
        storage.setRoute(`/${callId}`, { kind: 'body', body: bytes, contentType, chunked: chunked ?? false });
        await service.postReady(callId, storage.url(`/${callId}`));
        const call = await settled(service, callId);
        expect(call.attachment).toMatchObject({ state: 'attached', reason: null, size: bytes.length, sha256: sha256(bytes), content_type: expected });
        expect(storage.requests(`/${callId}`)).toBe(1);

        const served = await service.api(`/api/calls/${callId}/recording`);
        expect(served.status).toBe(200);
        expect(served.headers.get('content-type')).toBe(expected);
        expect(sha256(Buffer.from(await served.arrayBuffer()))).toBe(sha256(bytes));
      },
    );
  });

  // Faults that retrying cannot fix: failed at the first attempt, never retried.
  describe.concurrent('failed at once, with the reason', () => {
    interface PermanentCase {
      fault: string;
      /** Routes to set on the fake storage; the first one is the record_url. */
      routes: (callId: string) => [string, FakeBehaviour][];
      reason: (callId: string) => string | RegExp;
      /** Requests each storage path must have seen (one attempt, no retry). */
      requests: (callId: string) => Record<string, number>;
      /** Requests the not-allow-listed server must have seen: always none. */
      innerRequests?: number;
    }
    const storageUrl = (routePath: string) => storage.url(routePath);
    const cases: PermanentCase[] = [
      {
        fault: 'body over RECORDING_MAX_BYTES (Content-Length)',
        routes: (id) => [[`/${id}`, { kind: 'body', body: Buffer.concat([audio.wav, Buffer.alloc(1)]), contentType: 'audio/wav' }]],
        reason: () => `Recording too large: Content-Length ${CAP + 1} exceeds the limit of ${CAP} bytes`,
        requests: (id) => ({ [`/${id}`]: 1 }),
      },
      {
        fault: 'body over RECORDING_MAX_BYTES (chunked, no Content-Length)',
        routes: (id) => [[`/${id}`, { kind: 'body', body: Buffer.concat([audio.wav, Buffer.alloc(1)]), contentType: 'audio/wav', chunked: true }]],
        reason: () => `Recording too large: body exceeds the limit of ${CAP} bytes`,
        requests: (id) => ({ [`/${id}`]: 1 }),
      },
      {
        fault: 'endless audio body without Content-Length',
        routes: (id) => [[`/${id}`, { kind: 'endless', head: audio.mp3, contentType: 'audio/mpeg' }]],
        reason: () => `Recording too large: body exceeds the limit of ${CAP} bytes`,
        requests: (id) => ({ [`/${id}`]: 1 }),
      },
      {
        fault: 'redirect loop (A → B → A)',
        routes: (id) => [
          [`/${id}-A`, { kind: 'redirect', location: `/${id}-B` }],
          [`/${id}-B`, { kind: 'redirect', status: 307, location: storageUrl(`/${id}-A`) }],
        ],
        reason: (id) => `Too many redirects: redirect loop back to ${storageUrl(`/${id}-A`)}`,
        requests: (id) => ({ [`/${id}-A`]: 1, [`/${id}-B`]: 1 }),
      },
      {
        fault: 'redirect to itself',
        routes: (id) => [[`/${id}`, { kind: 'redirect', status: 301, location: `/${id}` }]],
        reason: (id) => `Too many redirects: redirect loop back to ${storageUrl(`/${id}`)}`,
        requests: (id) => ({ [`/${id}`]: 1 }),
      },
      {
        fault: 'redirect chain longer than 5 hops',
        routes: (id) => [
          ...Array.from({ length: 7 }, (_, hop): [string, FakeBehaviour] => [`/${id}-${hop}`, { kind: 'redirect', location: `/${id}-${hop + 1}` }]),
          [`/${id}-7`, { kind: 'body', body: audio.ogg, contentType: 'audio/ogg' }],
        ],
        reason: () => 'Too many redirects: more than 5 redirects',
        requests: (id) => ({ [`/${id}-0`]: 1, [`/${id}-5`]: 1, [`/${id}-6`]: 0, [`/${id}-7`]: 0 }),
      },
      {
        fault: 'redirect to a loopback port that is not allow-listed',
        routes: (id) => [[`/${id}`, { kind: 'redirect', location: inner.url('/secret') }]],
        reason: () => `Recording URL refused: host ${new URL(inner.origin).host} is not in the allow-list`,
        requests: (id) => ({ [`/${id}`]: 1 }),
        innerRequests: 0,
      },
      {
        fault: 'redirect to [::1] (IPv6 loopback)',
        routes: (id) => [[`/${id}`, { kind: 'redirect', location: `http://[::1]:${new URL(inner.origin).port}/secret` }]],
        reason: () => `Recording URL refused: host [::1]:${new URL(inner.origin).port} is not in the allow-list`,
        requests: (id) => ({ [`/${id}`]: 1 }),
        innerRequests: 0,
      },
      {
        fault: 'redirect to the cloud metadata address 169.254.169.254',
        routes: (id) => [[`/${id}`, { kind: 'redirect', location: 'http://169.254.169.254/latest/meta-data/iam/security-credentials/' }]],
        reason: () => 'Recording URL refused: host 169.254.169.254 is not in the allow-list',
        requests: (id) => ({ [`/${id}`]: 1 }),
      },
      {
        fault: 'redirect to an allow-listed name that resolves to loopback (localhost)',
        routes: (id) => [[`/${id}`, { kind: 'redirect', location: `http://localhost:${new URL(inner.origin).port}/secret` }]],
        reason: () => /^Recording URL refused: localhost resolves to (127\.0\.0\.1|::1), not a public address$/,
        requests: (id) => ({ [`/${id}`]: 1 }),
        innerRequests: 0,
      },
      {
        fault: 'redirect without a Location header',
        routes: (id) => [[`/${id}`, { kind: 'status', status: 302 }]],
        reason: () => 'HTTP 302 redirect without a Location header',
        requests: (id) => ({ [`/${id}`]: 1 }),
      },
      {
        fault: '403',
        routes: (id) => [[`/${id}`, { kind: 'status', status: 403 }]],
        reason: () => 'Recording request answered HTTP 403',
        requests: (id) => ({ [`/${id}`]: 1 }),
      },
      {
        fault: '410',
        routes: (id) => [[`/${id}`, { kind: 'status', status: 410 }]],
        reason: () => 'Recording request answered HTTP 410',
        requests: (id) => ({ [`/${id}`]: 1 }),
      },
    ];

    it.for(cases.map((row, index) => ({ ...row, callId: `PERMANENT-${index}` })))(
      '$fault → failed at once',
      async ({ routes, reason, requests, innerRequests, callId }, { expect }) => {
        const routed = routes(callId);
        for (const [routePath, behaviour] of routed) storage.setRoute(routePath, behaviour);
        const innerBefore = inner.requests('/secret');
        await service.postReady(callId, storage.url(routed[0]![0]));
        const call = await settled(service, callId);

        const expected = reason(callId);
        expect(call.attachment).toMatchObject({ state: 'failed', size: null, sha256: null });
        expect(call.attachment.reason).toMatch(typeof expected === 'string' ? new RegExp(`^${escapeRegExp(expected)}$`) : expected);
        // One attempt, no retry, and nothing left to wait for.
        expect(call.attachment.attempts).toBeUndefined();
        expect(attemptsLogged(service, callId)).toBe(1);
        expect(retriesLogged(service, callId)).toEqual([]);
        for (const [routePath, count] of Object.entries(requests(callId))) expect({ routePath, count: storage.requests(routePath) }).toEqual({ routePath, count });
        if (innerRequests !== undefined) expect(inner.requests('/secret') - innerBefore).toBe(innerRequests);
        const failure = service.logsFor(callId).find((line) => line.level === 50);
        expect(failure?.msg).toBe(`[WaVoIP Recording Webhook] ❌ Recording failed for call ${callId}: ${call.attachment.reason}`);
      },
    );
  });

  // The reason an operator reads for a body cut short names the bytes that did arrive.
  describe('reasons for a body cut short', () => {
    it('a reset mid-body (chunked) is reported as a truncated body, with the bytes that arrived', async () => {
      const callId = 'RESET-REASON';
      storage.setRoute(`/${callId}`, { kind: 'sequence', first: { kind: 'reset', body: audio.ogg, contentType: 'audio/ogg' }, times: 1, then: good });
      await service.postReady(callId, storage.url(`/${callId}`));
      expect((await settled(service, callId)).attachment.state).toBe('attached');
      // Not "Recording download failed: other side closed", which is what a storage that closes the
      // connection before answering at all gives: the bytes that came are named.
      expect(retriesLogged(service, callId).map((line) => line.reason)).toEqual([RESET_REASON]);
    });

    it('a truncated body names the bytes that arrived, also when the disk is busy', async () => {
      // The storage sends exactly half the bytes, then closes. Just then every libuv pool thread
      // is busy (as when other downloads and the database log are fsyncing), so creating the
      // temp file waits. The count must still be of the bytes that arrived, not of those the
      // download had consumed when undici failed the body ("received 0 of 24741").
      const reasons: unknown[] = [];
      for (let index = 0; index < 5; index++) {
        const callId = `TRUNCATED-BUSY-${index}`;
        const cutOff: FakeBehaviour = { kind: 'tap', onRequest: occupyThreadPool, then: { kind: 'truncated', body: audio.ogg, contentType: 'audio/ogg' } };
        storage.setRoute(`/${callId}`, { kind: 'sequence', first: cutOff, times: 1, then: good });
        await service.postReady(callId, storage.url(`/${callId}`));
        expect((await settled(service, callId)).attachment.state).toBe('attached');
        reasons.push(retriesLogged(service, callId)[0]?.reason);
      }
      expect(reasons).toEqual(Array(5).fill(TRUNCATED_REASON));
    });
  });

  it('leaves no partial file behind, and one stored file per attached call', async () => {
    await expectNoLeftovers(service);
  });
});

// ---------------------------------------------------------------------------------------------
// Retry-After: the next attempt is scheduled no earlier than the storage asked, up to POLL_MAX_DELAY.
// ---------------------------------------------------------------------------------------------
describe('Retry-After is honoured (up to POLL_MAX_DELAY)', () => {
  const INITIAL_MS = 300;
  const MAX_DELAY_MS = 3_000;
  /** The longest first retry delay the backoff alone can give: 2 × POLL_INITIAL_DELAY, +25% jitter. */
  const BACKOFF_CEILING_MS = 2 * INITIAL_MS * 1.25;
  let storage: FakeWavoipStorage;
  let service: InProcessService;

  beforeAll(async () => {
    storage = await startFakeWavoipStorage();
    service = await startInProcessService(
      testEnvironment(storage.origin, await makeDataDir(), { POLL_INITIAL_DELAY: `${INITIAL_MS}ms`, POLL_MAX_DELAY: `${MAX_DELAY_MS}ms`, POLL_MAX_WAIT: '60s' }),
      { httpTimeouts: HTTP_TIMEOUTS },
    );
  });

  afterAll(async () => {
    await service?.stop();
    await storage?.close();
  });

  interface RetryAfterCase {
    fault: string;
    status: number;
    /** Made when the test runs, so an HTTP date can lie in the future. */
    retryAfter: () => string | undefined;
    /**
     * Bounds for next_attempt_at given when the storage saw the failed request and when the
     * service logged the failure (the reschedule happened between the two, on the same clock).
     */
    bounds: (header: string | undefined, requestAt: number, loggedAt: number) => { earliest: number; latest: number };
  }

  const httpDateSecondsAhead = (seconds: number) => new Date(Math.floor(Date.now() / 1000 + seconds) * 1000).toUTCString();
  const cases: RetryAfterCase[] = [
    { fault: '503 with Retry-After: 1', status: 503, retryAfter: () => '1', bounds: (_h, req, log) => ({ earliest: req + 1_000, latest: log + 1_000 }) },
    { fault: '503 with Retry-After: 2', status: 503, retryAfter: () => '2', bounds: (_h, req, log) => ({ earliest: req + 2_000, latest: log + 2_000 }) },
    { fault: '429 with Retry-After: 2', status: 429, retryAfter: () => '2', bounds: (_h, req, log) => ({ earliest: req + 2_000, latest: log + 2_000 }) },
    {
      fault: '429 with Retry-After as an HTTP date',
      status: 429,
      retryAfter: () => httpDateSecondsAhead(3),
      bounds: (header, req, log) => ({ earliest: Date.parse(header ?? ''), latest: Date.parse(header ?? '') + (log - req) }),
    },
    {
      fault: '503 with Retry-After: 3600 (over POLL_MAX_DELAY)',
      status: 503,
      retryAfter: () => '3600',
      bounds: (_h, req, log) => ({ earliest: req + MAX_DELAY_MS, latest: log + MAX_DELAY_MS }),
    },
    {
      fault: '503 without Retry-After (the backoff alone, for contrast)',
      status: 503,
      retryAfter: () => undefined,
      bounds: (_h, req, log) => ({ earliest: req + 2 * INITIAL_MS * 0.75, latest: log + BACKOFF_CEILING_MS }),
    },
  ];

  describe.concurrent('the next attempt waits for Retry-After', () => {
    it.for(cases.map((row, index) => ({ ...row, callId: `RETRY-AFTER-${index}` })))(
      '$fault → next_attempt_at honours it, then attached',
      async ({ status, retryAfter, bounds, callId }, { expect }) => {
        const header = retryAfter();
        storage.setRoute(`/${callId}`, {
          kind: 'sequence',
          first: { kind: 'status', status, headers: header === undefined ? {} : { 'retry-after': header } },
          times: 1,
          then: good,
        });
        await service.postReady(callId, storage.url(`/${callId}`));

        let waiting: CallView['attachment'] | undefined;
        await waitFor(async () => {
          waiting = (await service.call(callId)).attachment;
          return waiting.attempts === 1;
        }, 'the first attempt to fail');
        expect(waiting).toMatchObject({ state: 'pending', last_error: `Recording request answered HTTP ${status}` });
        const nextAttemptAt = Date.parse(waiting?.next_attempt_at ?? '');
        const [requestAt] = storage.requestTimes(`/${callId}`);
        const retryLine = retriesLogged(service, callId)[0];
        expect(retryLine?.code).toBe(`HTTP_${status}`);
        expect(retryLine?.next_attempt_at).toBe(waiting?.next_attempt_at);
        const { earliest, latest } = bounds(header, requestAt as number, retryLine?.time as number);
        expect(nextAttemptAt).toBeGreaterThanOrEqual(earliest);
        expect(nextAttemptAt).toBeLessThanOrEqual(latest);
        // Later than the backoff alone would have waited: the header, not the backoff, set it.
        // (An HTTP date is absolute: on a loaded machine it may come closer than the backoff's
        // ceiling by the time the attempt fails, and then only the bounds above can tell.)
        const backoffAtMost = (retryLine?.time as number) + BACKOFF_CEILING_MS;
        if (header !== undefined && earliest > backoffAtMost) expect(nextAttemptAt).toBeGreaterThan(backoffAtMost);

        const call = await settled(service, callId);
        expect(call.attachment).toMatchObject({ state: 'attached', sha256: sha256(audio.ogg) });
        const times = storage.requestTimes(`/${callId}`);
        expect(times).toHaveLength(2);
        // The service did not come back before the time it announced.
        expect(times[1]).toBeGreaterThanOrEqual(nextAttemptAt);
      },
    );
  });

  it('leaves no partial file behind', async () => {
    await expectNoLeftovers(service);
  });
});

// ---------------------------------------------------------------------------------------------
// A service with a short POLL_MAX_WAIT: a fault that never clears ends "not available in time".
// ---------------------------------------------------------------------------------------------
describe('faults that never clear: failed "not available in time" at POLL_MAX_WAIT', () => {
  // Long enough for a second attempt after a stall (two 500 ms timeouts and a retry delay) even
  // on a loaded machine; every case has a download slot of its own, so none waits for another's.
  const MAX_WAIT = '2500ms';
  let storage: FakeWavoipStorage;
  let service: InProcessService;
  let refusedPort: number;

  beforeAll(async () => {
    storage = await startFakeWavoipStorage();
    refusedPort = await freePort();
    service = await startInProcessService(
      testEnvironment(storage.origin, await makeDataDir(), {
        RECORDING_URL_ALLOWLIST: `${new URL(storage.origin).host},127.0.0.1:${refusedPort}`,
        POLL_INITIAL_DELAY: '100ms',
        POLL_MAX_DELAY: '400ms',
        POLL_MAX_WAIT: MAX_WAIT,
        DOWNLOAD_CONCURRENCY: '32',
      }),
      { httpTimeouts: HTTP_TIMEOUTS },
    );
  });

  afterAll(async () => {
    await service?.stop();
    await storage?.close();
  });

  interface ForeverCase {
    fault: string;
    /** null: the record_url points at the refused port instead of the fake storage. */
    behaviour: FakeBehaviour | null;
    mode?: 'download' | 'poll';
    code: string;
    lastError: () => string;
  }

  const cases: ForeverCase[] = [
    { fault: '404 for a long time (after READY)', behaviour: { kind: 'status', status: 404 }, code: 'NOT_FOUND', lastError: () => 'Recording not found (HTTP 404): not published yet, or deleted' },
    { fault: '404 for a long time (backup polling, no READY)', behaviour: { kind: 'status', status: 404 }, mode: 'poll', code: 'NOT_FOUND', lastError: () => 'Recording not found (HTTP 404): not published yet, or deleted' },
    { fault: '500', behaviour: { kind: 'status', status: 500 }, code: 'HTTP_500', lastError: () => 'Recording request answered HTTP 500' },
    { fault: '502', behaviour: { kind: 'status', status: 502 }, code: 'HTTP_502', lastError: () => 'Recording request answered HTTP 502' },
    { fault: '503', behaviour: { kind: 'status', status: 503 }, code: 'HTTP_503', lastError: () => 'Recording request answered HTTP 503' },
    { fault: '503 with Retry-After: 3600', behaviour: { kind: 'status', status: 503, headers: { 'retry-after': '3600' } }, code: 'HTTP_503', lastError: () => 'Recording request answered HTTP 503' },
    { fault: '429 with Retry-After: 1', behaviour: { kind: 'status', status: 429, headers: { 'retry-after': '1' } }, code: 'HTTP_429', lastError: () => 'Recording request answered HTTP 429' },
    { fault: 'connection refused', behaviour: null, code: 'CONNECTION_REFUSED', lastError: () => `could not reach 127.0.0.1:${refusedPort}: connection refused` },
    { fault: 'reset mid-body', behaviour: { kind: 'reset', body: audio.ogg, contentType: 'audio/ogg' }, code: 'TRUNCATED', lastError: () => RESET_REASON },
    { fault: 'stall before headers', behaviour: { kind: 'stall-before-headers' }, code: 'TIMEOUT', lastError: () => 'Recording download timed out: Headers Timeout Error' },
    { fault: 'stall after headers', behaviour: { kind: 'stall-after-headers', contentType: 'audio/ogg' }, code: 'TIMEOUT', lastError: () => 'Recording download timed out: Body Timeout Error' },
    { fault: 'stall mid-body', behaviour: { kind: 'stall-mid-body', body: audio.ogg, contentType: 'audio/ogg' }, code: 'TIMEOUT', lastError: () => 'Recording download timed out: Body Timeout Error' },
    {
      fault: 'truncated body',
      behaviour: { kind: 'truncated', body: audio.ogg, contentType: 'audio/ogg' },
      code: 'TRUNCATED',
      lastError: () => TRUNCATED_REASON,
    },
    { fault: 'HTML with 200', behaviour: { kind: 'body', body: html, contentType: 'text/html' }, code: 'NOT_AUDIO', lastError: () => 'Recording body is text/html, not audio' },
    { fault: '0 bytes', behaviour: { kind: 'body', body: Buffer.alloc(0), contentType: 'audio/ogg' }, code: 'EMPTY_BODY', lastError: () => 'Recording body is empty' },
  ];

  describe.concurrent('given up at the deadline', () => {
    it.for(cases.map((row, index) => ({ ...row, callId: `FOREVER-${index}` })))(
      '$fault → failed "not available in time"',
      async ({ behaviour, mode, code, lastError, callId }, { expect }) => {
        if (behaviour !== null) storage.setRoute(`/${callId}`, behaviour);
        if (mode === 'poll') await sendEndedCall(service, callId);
        else await service.postReady(callId, behaviour === null ? `http://127.0.0.1:${refusedPort}/${callId}` : storage.url(`/${callId}`));
        const call = await settled(service, callId);

        expect(call.attachment).toMatchObject({ state: 'failed', size: null, sha256: null });
        expect(call.attachment.reason).toBe(`recording not available in time: gave up after ${MAX_WAIT} of retries (last error: ${lastError()})`);
        expect(call.attachment.attempts).toBeUndefined();

        // Retried on the schedule until the deadline: more than one attempt, each one request.
        const attempts = attemptsLogged(service, callId);
        expect(attempts).toBeGreaterThanOrEqual(2);
        expect(storage.requests(`/${callId}`)).toBe(behaviour === null ? 0 : attempts);
        const retries = retriesLogged(service, callId);
        expect(retries).toHaveLength(attempts - 1);
        expect(retries.map((line) => line.code)).toEqual(Array(attempts - 1).fill(code));
        const failure = service.logsFor(callId).find((line) => line.level === 50);
        expect(failure?.code).toBe(code);
        expect(failure?.reason).toBe(call.attachment.reason);
      },
    );
  });

  it('POST /api/calls/:id/retry on a call failed by a fault that has cleared → attached', async () => {
    const callId = 'FOREVER-THEN-RETRY';
    storage.setRoute(`/${callId}`, { kind: 'status', status: 503 });
    await service.postReady(callId, storage.url(`/${callId}`));
    expect((await settled(service, callId)).attachment.state).toBe('failed');
    const before = storage.requests(`/${callId}`);

    storage.setRoute(`/${callId}`, good);
    expect((await service.api(`/api/calls/${callId}/retry`, { method: 'POST' })).status).toBe(202);
    const call = await settled(service, callId, 'attached');
    expect(call.attachment).toMatchObject({ state: 'attached', reason: null, sha256: sha256(audio.ogg) });
    expect(storage.requests(`/${callId}`)).toBe(before + 1);
  });

  it('leaves no partial file behind', async () => {
    await expectNoLeftovers(service);
  });
});

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
