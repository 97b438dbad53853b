import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { AppError } from '../../src/errors.ts';
import { createHttpClient } from '../../src/download/http-client.ts';
import type { HttpClient } from '../../src/download/http-client.ts';
import { connectionFailure, downloadRecording, parseRetryAfter } from '../../src/download/download-recording.ts';
import type { DownloadedRecording } from '../../src/download/download-recording.ts';
import { parseAllowlist } from '../../src/download/url-guard.ts';
import { DATABASE_HEADROOM_BYTES } from '../../src/storage/storage-faults.ts';
import { startFakeWavoipStorage } from '../support/fake-wavoip-storage.ts';
import type { FakeBehaviour, FakeWavoipStorage } from '../support/fake-wavoip-storage.ts';
import { sha256 } from '../support/sha256.ts';

const FIXTURES = join(import.meta.dirname, '../fixtures/audio');
const mp3 = await readFile(join(FIXTURES, 'call-pt-br-9s.mp3'));
const ogg = await readFile(join(FIXTURES, 'call-pt-br-9s.ogg'));
const wav = await readFile(join(FIXTURES, 'call-pt-br-9s.wav'));
const html = Buffer.from('<!DOCTYPE html><html><body><h1>Not published yet</h1></body></html>');

let storage: FakeWavoipStorage;
let client: HttpClient;
let tmpDir: string;

beforeEach(async () => {
  storage = await startFakeWavoipStorage();
  // Short timeouts so the stall cases end quickly; no test asserts on how long anything took.
  client = createHttpClient({ connectTimeoutMs: 2000, headersTimeoutMs: 300, bodyTimeoutMs: 300 });
  tmpDir = await mkdtemp(join(tmpdir(), 'download-test-'));
});

afterEach(async () => {
  await client.close();
  await storage.close();
  await rm(tmpDir, { recursive: true, force: true });
});

function download(url: string, overrides: { maxBytes?: number; signal?: AbortSignal; allowlist?: string } = {}) {
  return downloadRecording({
    url,
    allowlist: parseAllowlist(overrides.allowlist ?? new URL(storage.origin).host),
    client,
    maxBytes: overrides.maxBytes ?? 10 * 1024 * 1024,
    tmpDir,
    storageHeadroomBytes: DATABASE_HEADROOM_BYTES,
    signal: overrides.signal ?? new AbortController().signal,
  });
}

async function downloadFailure(promise: Promise<DownloadedRecording>): Promise<AppError> {
  const error = await promise.then(
    () => {
      throw new Error('expected the download to fail');
    },
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(AppError);
  return error as AppError;
}

describe('downloadRecording of real audio', () => {
  it.each([
    { name: 'mp3', bytes: mp3, served: 'audio/mpeg', contentType: 'audio/mpeg', extension: 'mp3', container: 'MPEG', codec: 'MPEG 2 Layer 3' },
    { name: 'ogg', bytes: ogg, served: 'audio/ogg', contentType: 'audio/ogg', extension: 'opus', container: 'Ogg', codec: 'Opus' },
    { name: 'wav', bytes: wav, served: 'audio/wav', contentType: 'audio/wav', extension: 'wav', container: 'WAVE', codec: 'PCM' },
  ])('downloads the $name fixture intact', async ({ name: _name, bytes, served, ...expected }) => {
    storage.setRoute('/call-1', { kind: 'body', body: bytes, contentType: served });

    const result = await download(storage.url('/call-1'));

    expect(result).toMatchObject({ size: bytes.length, sha256: sha256(bytes), finalUrl: storage.url('/call-1'), ...expected });
    expect(result.durationSeconds).toBeGreaterThan(8.5);
    expect(result.durationSeconds).toBeLessThan(10);
    expect(result.tempPath.startsWith(tmpDir)).toBe(true);
    expect(result.tempPath.endsWith('.part')).toBe(true);
    expect(sha256(await readFile(result.tempPath))).toBe(sha256(bytes));
  });

  it('streams a chunked body with no Content-Length', async () => {
    storage.setRoute('/long-call', { kind: 'body', body: wav, contentType: 'audio/wav', chunked: true });
    const result = await download(storage.url('/long-call'));
    expect(result.size).toBe(wav.length);
    expect(result.sha256).toBe(sha256(wav));
  });

  it('names the sniffed type, bare, whatever the declared one says', async () => {
    storage.setRoute('/octet', { kind: 'body', body: ogg, contentType: 'application/octet-stream' });
    storage.setRoute('/lying', { kind: 'body', body: ogg, contentType: 'audio/mpeg' });
    storage.setRoute('/hostile', { kind: 'body', body: ogg, contentType: 'audio/ogg;,text/html' });
    storage.setRoute('/parameters', { kind: 'body', body: ogg, contentType: 'audio/ogg; codecs="opus"; x=<script>' });
    for (const path of ['/octet', '/lying', '/hostile', '/parameters']) {
      await expect(download(storage.url(path))).resolves.toMatchObject({ contentType: 'audio/ogg', extension: 'opus' });
    }
  });

  it('reports no metadata, rather than failing, when the audio cannot be parsed', async () => {
    // A RIFF/WAVE header (so it sniffs as audio) whose fmt chunk is too short to parse.
    const brokenWav = Buffer.alloc(64, 0x41);
    brokenWav.write('RIFF', 0);
    brokenWav.writeUInt32LE(56, 4);
    brokenWav.write('WAVEfmt ', 8);
    brokenWav.writeUInt32LE(2, 16);
    storage.setRoute('/broken', { kind: 'body', body: brokenWav, contentType: 'audio/wav' });

    const result = await download(storage.url('/broken'));

    expect(result).toMatchObject({ size: 64, contentType: 'audio/wav', container: null, codec: null, durationSeconds: null });
  });

  it('gets the recording once it is published (404 ×3 then the audio)', async () => {
    storage.setRoute('/late', {
      kind: 'sequence',
      times: 3,
      first: { kind: 'status', status: 404 },
      then: { kind: 'body', body: mp3, contentType: 'audio/mpeg' },
    });
    for (let attempt = 1; attempt <= 3; attempt++) {
      const error = await downloadFailure(download(storage.url('/late')));
      expect(error).toMatchObject({ code: 'NOT_FOUND', retryable: true });
    }
    await expect(download(storage.url('/late'))).resolves.toMatchObject({ sha256: sha256(mp3) });
    expect(storage.requests('/late')).toBe(4);
  });
});

describe('downloadRecording failures', () => {
  afterEach(async () => {
    // Whatever went wrong, no partial file may stay behind.
    expect(await readdir(tmpDir)).toEqual([]);
  });

  const failures: Array<{ name: string; behaviour: FakeBehaviour; code: string; retryable: boolean; message?: string }> = [
    { name: '404', behaviour: { kind: 'status', status: 404 }, code: 'NOT_FOUND', retryable: true },
    { name: '500', behaviour: { kind: 'status', status: 500 }, code: 'HTTP_500', retryable: true },
    { name: '502', behaviour: { kind: 'status', status: 502 }, code: 'HTTP_502', retryable: true },
    { name: '408', behaviour: { kind: 'status', status: 408 }, code: 'HTTP_408', retryable: true },
    { name: '501', behaviour: { kind: 'status', status: 501 }, code: 'HTTP_501', retryable: true },
    { name: '403', behaviour: { kind: 'status', status: 403 }, code: 'HTTP_403', retryable: false },
    { name: '410', behaviour: { kind: 'status', status: 410 }, code: 'HTTP_410', retryable: false },
    { name: 'an HTML page with 200', behaviour: { kind: 'body', body: html, contentType: 'text/html' }, code: 'NOT_AUDIO', retryable: true, message: 'body is text/html, not audio' },
    { name: 'HTML labelled as audio', behaviour: { kind: 'body', body: html, contentType: 'audio/mpeg' }, code: 'NOT_AUDIO', retryable: true, message: 'text/html' },
    { name: 'a PNG', behaviour: { kind: 'body', body: Buffer.from('89504e470d0a1a0a0000000d49484452', 'hex'), contentType: 'audio/ogg' }, code: 'NOT_AUDIO', retryable: true, message: 'image/png' },
    { name: 'an endless HTML page', behaviour: { kind: 'endless', head: html, contentType: 'text/html' }, code: 'NOT_AUDIO', retryable: true },
    { name: 'an empty 200', behaviour: { kind: 'body', body: Buffer.alloc(0), contentType: 'audio/mpeg' }, code: 'EMPTY_BODY', retryable: true },
    { name: 'a truncated body', behaviour: { kind: 'truncated', body: ogg, contentType: 'audio/ogg' }, code: 'TRUNCATED', retryable: true },
    { name: 'a reset mid-body', behaviour: { kind: 'reset', body: ogg, contentType: 'audio/ogg' }, code: 'TRUNCATED', retryable: true },
    { name: 'a stall before headers', behaviour: { kind: 'stall-before-headers' }, code: 'TIMEOUT', retryable: true },
    { name: 'a stall after headers', behaviour: { kind: 'stall-after-headers', contentType: 'audio/ogg' }, code: 'TIMEOUT', retryable: true },
    { name: 'a stall mid-body', behaviour: { kind: 'stall-mid-body', body: ogg, contentType: 'audio/ogg' }, code: 'TIMEOUT', retryable: true },
    { name: 'an endless audio body', behaviour: { kind: 'endless', head: mp3, contentType: 'audio/mpeg' }, code: 'TOO_LARGE', retryable: false },
    { name: 'a Content-Length over the limit', behaviour: { kind: 'body', body: wav, contentType: 'audio/wav' }, code: 'TOO_LARGE', retryable: false, message: 'Content-Length' },
    { name: 'a chunked body over the limit', behaviour: { kind: 'body', body: wav, contentType: 'audio/wav', chunked: true }, code: 'TOO_LARGE', retryable: false },
  ];

  it.each(failures)('$name → $code (retryable $retryable)', async ({ behaviour, code, retryable, message }) => {
    storage.setRoute('/call', behaviour);
    const error = await downloadFailure(download(storage.url('/call'), { maxBytes: 200_000 }));
    expect(error).toMatchObject({ code, retryable });
    if (message !== undefined) expect(error.message).toContain(message);
  });

  it('passes Retry-After on as retryAfterMs', async () => {
    storage.setRoute('/busy', { kind: 'status', status: 503, headers: { 'retry-after': '120' } });
    storage.setRoute('/limited', { kind: 'status', status: 429, headers: { 'retry-after': 'Wed, 21 Oct 2015 07:28:00 GMT' } });
    await expect(downloadFailure(download(storage.url('/busy')))).resolves.toMatchObject({
      code: 'HTTP_503',
      retryable: true,
      retryAfterMs: 120_000,
    });
    // A date in the past means "now".
    await expect(downloadFailure(download(storage.url('/limited')))).resolves.toMatchObject({
      code: 'HTTP_429',
      retryAfterMs: 0,
    });
  });

  it('follows allow-listed redirects, re-checking each hop', async () => {
    const other = await startFakeWavoipStorage();
    try {
      other.setRoute('/final', { kind: 'body', body: mp3, contentType: 'audio/mpeg' });
      storage.setRoute('/a', { kind: 'redirect', status: 301, location: '/b' });
      storage.setRoute('/b', { kind: 'redirect', status: 307, location: other.url('/final') });
      const allowlist = `${new URL(storage.origin).host},${new URL(other.origin).host}`;

      const result = await download(storage.url('/a'), { allowlist });

      expect(result.finalUrl).toBe(other.url('/final'));
      expect(result.sha256).toBe(sha256(mp3));
      await rm(result.tempPath);
    } finally {
      await other.close();
    }
  });

  it('refuses a redirect to a loopback port that is not allow-listed', async () => {
    const other = await startFakeWavoipStorage();
    try {
      other.setRoute('/internal', { kind: 'body', body: mp3, contentType: 'audio/mpeg' });
      storage.setRoute('/a', { kind: 'redirect', location: other.url('/internal') });
      const error = await downloadFailure(download(storage.url('/a')));
      expect(error).toMatchObject({ code: 'URL_REFUSED', retryable: false });
      expect(other.requests('/internal')).toBe(0);
    } finally {
      await other.close();
    }
  });

  it('refuses redirect loops and long redirect chains', async () => {
    storage.setRoute('/loop-a', { kind: 'redirect', location: '/loop-b' });
    storage.setRoute('/loop-b', { kind: 'redirect', location: '/loop-a' });
    for (let hop = 0; hop < 6; hop++) storage.setRoute(`/hop-${hop}`, { kind: 'redirect', location: `/hop-${hop + 1}` });
    storage.setRoute('/hop-6', { kind: 'body', body: mp3, contentType: 'audio/mpeg' });
    storage.setRoute('/hop-1-of-5', { kind: 'redirect', location: '/hop-2' });

    await expect(downloadFailure(download(storage.url('/loop-a')))).resolves.toMatchObject({ code: 'TOO_MANY_REDIRECTS', retryable: false });
    await expect(downloadFailure(download(storage.url('/hop-0')))).resolves.toMatchObject({ code: 'TOO_MANY_REDIRECTS', retryable: false });
    expect(storage.requests('/hop-6')).toBe(0);
    // Five redirects (hop-1 → … → hop-6) are still fine.
    const result = await download(storage.url('/hop-1'));
    expect(result.sha256).toBe(sha256(mp3));
    await rm(result.tempPath);
  });

  it('refuses a name resolving to loopback when only the IP:port is allow-listed', async () => {
    storage.setRoute('/call', { kind: 'body', body: mp3, contentType: 'audio/mpeg' });
    const port = new URL(storage.origin).port;
    const error = await downloadFailure(download(`http://localhost:${port}/call`));
    expect(error).toMatchObject({ code: 'URL_REFUSED', retryable: false });
    expect(storage.requests('/call')).toBe(0);
  });

  it('refuses, at DNS time, an allow-listed name that resolves to loopback', async () => {
    storage.setRoute('/call', { kind: 'body', body: mp3, contentType: 'audio/mpeg' });
    const port = new URL(storage.origin).port;
    const error = await downloadFailure(
      download(`http://localhost:${port}/call`, { allowlist: `${new URL(storage.origin).host},localhost` }),
    );
    expect(error).toMatchObject({ code: 'URL_REFUSED', retryable: false });
    expect(error.message).toContain('resolves to 127.0.0.1');
    expect(storage.requests('/call')).toBe(0);
  });

  it('stops when the signal aborts mid-body', async () => {
    storage.setRoute('/call', { kind: 'stall-mid-body', body: wav, contentType: 'audio/wav' });
    // Long enough that only the abort can end this download.
    client = createHttpClient({ bodyTimeoutMs: 60_000 });
    const controller = new AbortController();
    const pending = download(storage.url('/call'), { signal: controller.signal });
    await vi.waitFor(async () => expect(await readdir(tmpDir)).toHaveLength(1));
    controller.abort();
    await expect(downloadFailure(pending)).resolves.toMatchObject({ code: 'ABORTED', retryable: true });
  });

  it('does not start when the signal is already aborted', async () => {
    storage.setRoute('/call', { kind: 'body', body: mp3, contentType: 'audio/mpeg' });
    const error = await downloadFailure(download(storage.url('/call'), { signal: AbortSignal.abort() }));
    expect(error).toMatchObject({ code: 'ABORTED', retryable: true });
  });
});

describe('parseRetryAfter', () => {
  const now = Date.parse('2025-01-01T00:00:00Z');
  it.each([
    [undefined, undefined],
    ['0', 0],
    ['30', 30_000],
    [' 7 ', 7_000],
    ['Wed, 01 Jan 2025 00:01:00 GMT', 60_000],
    ['Tue, 31 Dec 2024 23:00:00 GMT', 0],
    ['soon', undefined],
    ['-5', undefined],
  ])('%j → %j', (value, expected) => {
    expect(parseRetryAfter(value, now)).toBe(expected);
  });
});

describe('a storage that cannot be reached', () => {
  it('with nothing listening says the connection was refused, and is retried', async () => {
    const port = new URL(storage.origin).port;
    await storage.close();
    const error = await downloadFailure(download(`http://127.0.0.1:${port}/call-1`));
    expect(error).toMatchObject({ code: 'CONNECTION_REFUSED', retryable: true, message: `could not reach 127.0.0.1:${port}: connection refused` });
  });

  it('answering plain HTTP to https:// says the TLS handshake failed, and is retried', async () => {
    const host = new URL(storage.origin).host;
    const error = await downloadFailure(download(`https://${host}/call-1`));
    expect(error.code).toBe('TLS_FAILED');
    expect(error.retryable).toBe(true);
    expect(error.message).toMatch(new RegExp(`^could not reach ${host.replace(/\./g, '\\.')}: TLS handshake failed \\((EPROTO|ERR_SSL_[A-Z_]+)\\)$`));
  });
});

describe('connectionFailure names what failed from the error Node reports', () => {
  const url = new URL('https://storage.wavoip.com/123');
  const nodeError = (code: string, message = code) => Object.assign(new Error(message), { code });
  it.each([
    ['ENOTFOUND', 'DNS_FAILED', 'could not reach storage.wavoip.com: DNS lookup failed'],
    ['EAI_AGAIN', 'DNS_FAILED', 'could not reach storage.wavoip.com: DNS lookup failed (temporary failure in name resolution)'],
    ['ECONNREFUSED', 'CONNECTION_REFUSED', 'could not reach storage.wavoip.com: connection refused'],
    ['ECONNRESET', 'CONNECTION_RESET', 'could not reach storage.wavoip.com: connection reset before an answer'],
    ['EHOSTUNREACH', 'HOST_UNREACHABLE', 'could not reach storage.wavoip.com: no route to host'],
    ['ENETUNREACH', 'HOST_UNREACHABLE', 'could not reach storage.wavoip.com: no route to host'],
    ['ETIMEDOUT', 'CONNECT_TIMEOUT', 'could not reach storage.wavoip.com: connection timed out'],
    ['CERT_HAS_EXPIRED', 'TLS_FAILED', 'could not reach storage.wavoip.com: TLS handshake failed (CERT_HAS_EXPIRED)'],
    ['UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'TLS_FAILED', 'could not reach storage.wavoip.com: TLS handshake failed (UNABLE_TO_VERIFY_LEAF_SIGNATURE)'],
    ['ERR_TLS_CERT_ALTNAME_INVALID', 'TLS_FAILED', 'could not reach storage.wavoip.com: TLS handshake failed (ERR_TLS_CERT_ALTNAME_INVALID)'],
  ])('%s → %s', (nodeCode, code, message) => {
    expect(connectionFailure(nodeError(nodeCode), url)).toMatchObject({ code, message, retryable: true });
  });

  it('leaves other errors to the general network error', () => {
    expect(connectionFailure(nodeError('UND_ERR_SOCKET'), url)).toBeUndefined();
    expect(connectionFailure(new Error('no code'), url)).toBeUndefined();
  });
});
