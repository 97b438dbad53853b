import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeWavoipStorage, type FakeWavoipStorage } from '../support/fake-wavoip-storage.ts';
import { NO_POLLING, makeDataDir, startInProcessService, testEnvironment, type InProcessService } from '../support/service-harness.ts';
import { openTestDatabase } from '../support/test-database.ts';
import { sha256 } from '../support/sha256.ts';

// How GET /api/calls/:id/recording answers: a Content-Type of our own whatever the upstream
// declared or older releases stored, headers that keep browsers from running the bytes, a safe
// Content-Disposition, suffix ranges, and conditional requests.

const ogg = fs.readFileSync(new URL('../fixtures/audio/call-pt-br-9s.ogg', import.meta.url));
const mp3 = fs.readFileSync(new URL('../fixtures/audio/call-pt-br-9s.mp3', import.meta.url));
// Real Ogg bytes with a script after them, as a hostile allow-listed host could serve.
const oggWithScript = Buffer.concat([ogg, Buffer.from('<script>alert(document.cookie)</script>')]);
const HOSTILE_TYPE = 'audio/ogg;,text/html';
// No control characters: the webhook refuses those in a call id.
const EVIL_CALL_ID = `x"; filename="evil.html/..\\%0d%0aSet-Cookie: a=b; <script>'`;

let storage: FakeWavoipStorage;
let env: Record<string, string>;
let service: InProcessService;

async function attach(callId: string, path: string, body: Buffer, contentType: string): Promise<void> {
  storage.setRoute(path, { kind: 'body', body, contentType });
  await service.postReady(callId, storage.url(path));
  await service.waitForAttachment(callId, 'attached');
}

const recording = (callId: string, init: RequestInit = {}, query = '') =>
  service.api(`/api/calls/${encodeURIComponent(callId)}/recording${query}`, init);

beforeAll(async () => {
  storage = await startFakeWavoipStorage();
  env = testEnvironment(storage.origin, await makeDataDir(), NO_POLLING);
  service = await startInProcessService(env);
  await attach('HOSTILE-UPSTREAM', '/hostile-upstream', oggWithScript, HOSTILE_TYPE);
  await attach(EVIL_CALL_ID, '/evil-call-id', ogg, 'audio/ogg');
  await attach('OLD-ROW-HTML', '/old-row-html', ogg, 'audio/ogg');
  await attach('OLD-ROW-LIST', '/old-row-list', mp3, 'audio/mpeg');
  // Rows an older release wrote with the upstream's header verbatim.
  const database = await openTestDatabase(env);
  try {
    await database.run('update calls set recording_content_type = ? where call_id = ?', ['text/html; charset=utf-8', 'OLD-ROW-HTML']);
    await database.run('update calls set recording_content_type = ? where call_id = ?', ['audio/mpeg;,text/html', 'OLD-ROW-LIST']);
  } finally {
    await database.close();
  }
});

afterAll(async () => {
  await service?.stop();
  await storage?.close();
});

describe('the Content-Type served', () => {
  it('is the sniffed audio/ogg, stored and served, for Ogg an upstream declared as "audio/ogg;,text/html"', async () => {
    expect((await service.call('HOSTILE-UPSTREAM')).attachment.content_type).toBe('audio/ogg');
    const response = await recording('HOSTILE-UPSTREAM');
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('audio/ogg');
    expect(response.headers.get('x-content-type-options')).toBe('nosniff');
    expect(response.headers.get('content-security-policy')).toBe('sandbox');
    expect(response.headers.get('content-disposition')).toBe('inline; filename="call-HOSTILE-UPSTREAM.opus"');
    expect(Buffer.from(await response.arrayBuffer()).equals(oggWithScript)).toBe(true);
  });

  it.each([
    ['OLD-ROW-HTML', 'text/html; charset=utf-8', 'audio/ogg'],
    ['OLD-ROW-LIST', 'audio/mpeg;,text/html', 'audio/mpeg'],
  ])('is a type of the fixed list for a row storing %s as %j', async (callId, _stored, served) => {
    for (const method of ['GET', 'HEAD']) {
      const response = await recording(callId, { method });
      expect(response.status).toBe(200);
      expect(response.headers.get('content-type')).toBe(served);
      expect(response.headers.get('x-content-type-options')).toBe('nosniff');
      expect(response.headers.get('content-security-policy')).toBe('sandbox');
    }
  });
});

describe('Content-Disposition', () => {
  it.each([
    ['', 'inline'],
    ['?download=0', 'inline'],
    ['?download=false', 'inline'],
    ['?download=1', 'attachment'],
    ['?download=true', 'attachment'],
  ])('answers %j with %s and a file name of [A-Za-z0-9._-] only, for a call id full of quotes and slashes', async (query, disposition) => {
    const response = await recording(EVIL_CALL_ID, {}, query);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-disposition')).toBe(`${disposition}; filename="call-x_filename_evil.html_.._0d_0aSet-Cookie_a_b_script_.opus"`);
    expect(Buffer.from(await response.arrayBuffer()).equals(ogg)).toBe(true);
  });

  it.each([
    ['download=yes', /download/],
    ['download=', /download/],
    ['colour=red', /colour|additional/],
  ])('refuses %s with a 400 naming the parameter', async (query, message) => {
    const response = await recording('HOSTILE-UPSTREAM', {}, `?${query}`);
    expect(response.status).toBe(400);
    expect(((await response.json()) as { error: string }).error).toMatch(message);
  });
});

describe('Range', () => {
  it.each(['bytes=-99999', `bytes=-${ogg.length + 1}`, `bytes=-${ogg.length}`])('answers the suffix %s, as long as the file or longer, with 206 and the whole file', async (range) => {
    const response = await recording(EVIL_CALL_ID, { headers: { range } });
    expect(response.status).toBe(206);
    expect(response.headers.get('content-range')).toBe(`bytes 0-${ogg.length - 1}/${ogg.length}`);
    expect(response.headers.get('content-length')).toBe(String(ogg.length));
    expect(Buffer.from(await response.arrayBuffer()).equals(ogg)).toBe(true);
  });

  it.each(['bytes=-0', `bytes=${ogg.length}-`])('still answers the unsatisfiable %s with 416', async (range) => {
    const response = await recording(EVIL_CALL_ID, { headers: { range } });
    expect(response.status).toBe(416);
    expect(response.headers.get('content-range')).toBe(`bytes */${ogg.length}`);
  });
});

describe('conditional requests', () => {
  const etag = `"${sha256(ogg)}"`;

  it('sends the ETag', async () => {
    expect((await recording(EVIL_CALL_ID)).headers.get('etag')).toBe(etag);
  });

  it.each([
    ['the ETag', etag],
    ['the weak ETag', `W/${etag}`],
    ['a list holding it', `"other", W/"more",${etag}`],
    ['*', '*'],
  ])('answers If-None-Match with %s with 304, the ETag and no body', async (_name, ifNoneMatch) => {
    for (const method of ['GET', 'HEAD']) {
      const response = await recording(EVIL_CALL_ID, { method, headers: { 'if-none-match': ifNoneMatch } });
      expect(response.status).toBe(304);
      expect(response.headers.get('etag')).toBe(etag);
      expect((await response.arrayBuffer()).byteLength).toBe(0);
    }
  });

  it('answers If-None-Match with other tags with 200 and the file', async () => {
    const response = await recording(EVIL_CALL_ID, { headers: { 'if-none-match': `"other", "${sha256(mp3)}"` } });
    expect(response.status).toBe(200);
    expect(Buffer.from(await response.arrayBuffer()).equals(ogg)).toBe(true);
  });

  it('honours the range when If-Range holds the ETag', async () => {
    const response = await recording(EVIL_CALL_ID, { headers: { range: 'bytes=0-99', 'if-range': etag } });
    expect(response.status).toBe(206);
    expect(response.headers.get('content-range')).toBe(`bytes 0-99/${ogg.length}`);
    expect(Buffer.from(await response.arrayBuffer()).equals(ogg.subarray(0, 100))).toBe(true);
  });

  it.each([
    ['another ETag', 'bytes=0-99', `"${sha256(mp3)}"`],
    ['the weak ETag (If-Range needs a strong match)', 'bytes=0-99', `W/${etag}`],
    ['a date', 'bytes=0-99', 'Wed, 21 Oct 2015 07:28:00 GMT'],
    ['another ETag and an unsatisfiable range', `bytes=${ogg.length}-`, '"other"'],
  ])('sends the whole file with 200 when If-Range holds %s', async (_name, range, ifRange) => {
    const response = await recording(EVIL_CALL_ID, { headers: { range, 'if-range': ifRange } });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-range')).toBeNull();
    expect(Buffer.from(await response.arrayBuffer()).equals(ogg)).toBe(true);
  });
});
