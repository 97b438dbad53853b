/**
 * The security matrix: the one place a reviewer reads how the service treats hostile input.
 * Every row runs the real code over real loopback HTTP; nothing of ours is mocked.
 *
 * 1. SSRF. Recording URLs arrive in unauthenticated webhooks. Every internal target, in every
 *    spelling, directly and behind each redirect status, is refused by the real downloader
 *    (downloadRecording with the real undici client) and by the whole service, with the reason
 *    an operator reads. A loopback "trap" server, listening dual-stack on a port no allow-list
 *    names, counts connections: after every refusal it has seen none (a control row shows it
 *    does see a fetch the guard permits).
 * 2. Path traversal in call ids. Hostile ids are either refused with a 400 naming the field or
 *    stored safely: the recording lands as a plain file directly inside DATA_DIR/recordings,
 *    and API paths built to escape give the call's own recording or a JSON 4xx, never a file
 *    outside the store.
 * 3. Authentication. Every API route answers 401 to every wrong credential, including an old
 *    token after API_TOKEN changed and the service restarted; /healthz and /readyz stay open;
 *    a webhook without the right token is answered 401 and nothing is stored.
 * 4. Secrets never reach the log: the webhook token, the API token, wrong tokens, and tokens
 *    or passwords inside a record_url.
 *
 * Scattered tests cover much of this too (test/download, test/storage, test/integration); they
 * stay. Nothing here measures time.
 */
import fs from 'node:fs';
import { createServer, request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { downloadRecording, type DownloadedRecording } from '../../src/download/download-recording.ts';
import { createHttpClient, type HttpClient } from '../../src/download/http-client.ts';
import { lookupPublicAddress, parseAllowlist, type AllowlistEntry } from '../../src/download/url-guard.ts';
import { AppError } from '../../src/errors.ts';
import { recordingKeyFor } from '../../src/storage/recording-store.ts';
import { DATABASE_HEADROOM_BYTES } from '../../src/storage/storage-faults.ts';
import { startFakeWavoipStorage, type FakeWavoipStorage } from '../support/fake-wavoip-storage.ts';
import {
  API_TOKEN,
  NO_POLLING,
  WEBHOOK_TOKEN,
  makeDataDir,
  startInProcessService,
  testEnvironment,
  waitFor,
  type CallView,
  type InProcessService,
} from '../support/service-harness.ts';
import { openTestDatabase, testDialect, type TestDatabase } from '../support/test-database.ts';
import { sha256 } from '../support/sha256.ts';

const mp3 = fs.readFileSync(new URL('../fixtures/audio/call-pt-br-9s.mp3', import.meta.url));
const REDIRECT_STATUSES = [301, 302, 307, 308] as const;
/** Short client timeouts: a row that wrongly connects somewhere fails fast instead of hanging. */
const HTTP_TIMEOUTS = { connectTimeoutMs: 2_000, headersTimeoutMs: 2_000, bodyTimeoutMs: 2_000 };

// ---------------------------------------------------------------------------------------------
// The trap: a server on a loopback port no allow-list names, answering every request with real
// audio, so that a guard that let a request through would show as a download, not a hang.
// ---------------------------------------------------------------------------------------------

interface Trap {
  port: number;
  /** Remote address of every connection accepted so far. */
  connections(): string[];
  close(): Promise<void>;
}

async function startTrap(): Promise<Trap> {
  const remotes: string[] = [];
  const server = createServer((_request, response) => {
    response.writeHead(200, { 'content-type': 'audio/mpeg', 'content-length': mp3.length });
    response.end(mp3);
  });
  server.on('connection', (socket) => remotes.push(socket.remoteAddress ?? 'unknown'));
  const listen = (host: string) =>
    new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  // Dual-stack where the machine has IPv6, so that 127.0.0.1, ::1, ::ffff:127.0.0.1, 0.0.0.0
  // and [::] all land here; IPv4 loopback only where it has not.
  await listen('::').catch(() => listen('127.0.0.1'));
  return {
    port: (server.address() as AddressInfo).port,
    connections: () => [...remotes],
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/**
 * Internal addresses in the spellings a naive string check misses. `canonical` is the host as
 * WHATWG URL (and so the guard) sees it; the refusal names it.
 */
const INTERNAL_ADDRESSES: { form: string; host: string; canonical: string }[] = [
  { form: 'loopback, decimal', host: '2130706433', canonical: '127.0.0.1' },
  { form: 'loopback, octal', host: '0177.0.0.1', canonical: '127.0.0.1' },
  { form: 'loopback, dotted hex', host: '0x7f.0.0.1', canonical: '127.0.0.1' },
  { form: 'loopback, one hex number', host: '0x7f000001', canonical: '127.0.0.1' },
  { form: 'loopback, short form', host: '127.1', canonical: '127.0.0.1' },
  { form: 'loopback, zero-padded', host: '127.000.000.001', canonical: '127.0.0.1' },
  { form: 'loopback, trailing dot', host: '127.0.0.1.', canonical: '127.0.0.1' },
  { form: 'loopback, full-width digits', host: '１２７．０．０．１', canonical: '127.0.0.1' },
  { form: 'loopback, IPv4-mapped IPv6 (dotted)', host: '[::ffff:127.0.0.1]', canonical: '[::ffff:7f00:1]' },
  { form: 'loopback, IPv4-mapped IPv6 (hex)', host: '[::ffff:7f00:1]', canonical: '[::ffff:7f00:1]' },
  { form: 'loopback, IPv4-compatible IPv6 (deprecated ::a.b.c.d)', host: '[::127.0.0.1]', canonical: '[::7f00:1]' },
  { form: 'loopback, NAT64 64:ff9b::/96', host: '[64:ff9b::127.0.0.1]', canonical: '[64:ff9b::7f00:1]' },
  { form: 'IPv6 loopback', host: '[::1]', canonical: '[::1]' },
  { form: 'IPv6 unspecified', host: '[::]', canonical: '[::]' },
  { form: 'IPv4 unspecified', host: '0.0.0.0', canonical: '0.0.0.0' },
  { form: 'IPv4 unspecified, short form', host: '0', canonical: '0.0.0.0' },
  { form: 'cloud metadata', host: '169.254.169.254', canonical: '169.254.169.254' },
  { form: 'cloud metadata, decimal', host: '2852039166', canonical: '169.254.169.254' },
  { form: 'cloud metadata, IPv4-mapped IPv6', host: '[::ffff:169.254.169.254]', canonical: '[::ffff:a9fe:a9fe]' },
  { form: '10/8', host: '10.0.0.1', canonical: '10.0.0.1' },
  { form: '10/8, last address', host: '10.255.255.254', canonical: '10.255.255.254' },
  { form: '172.16/12', host: '172.16.0.1', canonical: '172.16.0.1' },
  { form: '172.16/12, last address', host: '172.31.255.254', canonical: '172.31.255.254' },
  { form: '192.168/16', host: '192.168.0.1', canonical: '192.168.0.1' },
  { form: '192.168/16, last address', host: '192.168.255.254', canonical: '192.168.255.254' },
  { form: '100.64/10 (carrier-grade NAT)', host: '100.64.0.1', canonical: '100.64.0.1' },
  { form: '100.64/10, last address', host: '100.127.255.254', canonical: '100.127.255.254' },
  { form: 'fc00::/7 (unique local)', host: '[fc00::1]', canonical: '[fc00::1]' },
  { form: 'fc00::/7, fd00::/8 half', host: '[fd12:3456::1]', canonical: '[fd12:3456::1]' },
  { form: 'fe80::/10 (link local)', host: '[fe80::1]', canonical: '[fe80::1]' },
  { form: 'fe80::/10, last block', host: '[febf::1]', canonical: '[febf::1]' },
];

/** The host as it may appear in a Location header (bytes are latin1 there): percent-encoded UTF-8 if not ASCII. */
const inHeader = (host: string) => (/^[\x20-\x7e]*$/.test(host) ? host : encodeURIComponent(host));

// =============================================================================================
// 1. SSRF, through downloadRecording with the real HTTP client
// =============================================================================================
describe('1. SSRF: the downloader refuses every internal target and connects to none', () => {
  let storage: FakeWavoipStorage;
  let trap: Trap;
  let client: HttpClient;
  let tmpDir: string;
  /** `127.0.0.1:<port>` of the fake storage: the exact host:port entry of a loopback storage. */
  let storageHost: string;

  beforeAll(async () => {
    storage = await startFakeWavoipStorage();
    trap = await startTrap();
    client = createHttpClient(HTTP_TIMEOUTS);
    tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'security-matrix-'));
    storageHost = new URL(storage.origin).host;
  });

  afterAll(async () => {
    await client?.close();
    await storage?.close();
    await trap?.close();
    if (tmpDir) fs.rmSync(tmpDir, { recursive: true, force: true });
  });

  afterEach(() => {
    // The proof for every row: nothing connected to the trap, and no partial file stayed.
    expect(trap.connections()).toEqual([]);
    expect(fs.readdirSync(tmpDir)).toEqual([]);
  });

  /** What an operator can configure: the storage's exact host:port, plus the default host. */
  const realisticAllowlist = () => parseAllowlist(`${storageHost},storage.wavoip.com`);

  function download(url: string, allowlist: readonly AllowlistEntry[]): Promise<DownloadedRecording> {
    return downloadRecording({ url, allowlist, client, maxBytes: 10 * 1024 * 1024, tmpDir, storageHeadroomBytes: DATABASE_HEADROOM_BYTES, signal: new AbortController().signal });
  }

  async function refusal(pending: Promise<DownloadedRecording>, code = 'URL_REFUSED'): Promise<AppError> {
    const outcome = await pending.then(
      (downloaded) => downloaded,
      (error: unknown) => error,
    );
    if (!(outcome instanceof AppError)) {
      throw new Error(`expected a refusal, got ${outcome instanceof Error ? outcome.message : `a download (${JSON.stringify(outcome)})`}`);
    }
    expect(outcome.code).toBe(code);
    expect(outcome.retryable).toBe(false);
    return outcome;
  }

  const notPublic = (canonical: string) => `Recording URL refused: ${canonical} is not a public address (allow-list its exact host:port to permit it)`;
  const notListed = (host: string) => `Recording URL refused: host ${host} is not in the allow-list`;

  describe('an internal address given directly', () => {
    it.each(INTERNAL_ADDRESSES)('$form: http://$host/ → "$canonical is not a public address"', async ({ host, canonical }) => {
      // An operator cannot even allow-list it without a port…
      expect(() => parseAllowlist(canonical)).toThrow(expect.objectContaining({ code: 'INVALID_ALLOWLIST' }));
      // …and were it listed by host (any port), the address check still refuses it, on the
      // default port and on the trap's.
      const namingIt: AllowlistEntry[] = [...realisticAllowlist(), { kind: 'host', host: canonical }];
      for (const url of [`http://${host}/recording`, `http://${host}:${trap.port}/recording`]) {
        expect((await refusal(download(url, namingIt))).message).toBe(notPublic(canonical));
      }
      // With the allow-list an operator can write, it is simply not on it.
      const error = await refusal(download(`http://${host}:${trap.port}/recording`, realisticAllowlist()));
      expect(error.message).toBe(notListed(`${canonical}:${trap.port}`));
    });
  });

  describe('a redirect from the allowed storage into an internal address', () => {
    const rows = REDIRECT_STATUSES.flatMap((status) => INTERNAL_ADDRESSES.map((row) => ({ status, ...row })));

    it.each(rows)('$status → $form ($host) → refused at that hop', async ({ status, host, canonical }) => {
      const route = `/redirect-${status}-${encodeURIComponent(host)}`;
      storage.setRoute(route, { kind: 'redirect', status, location: `http://${inHeader(host)}:${trap.port}/recording` });

      const unlisted = await refusal(download(storage.url(route), realisticAllowlist()));
      expect(unlisted.message).toBe(notListed(`${canonical}:${trap.port}`));
      const namingIt: AllowlistEntry[] = [...realisticAllowlist(), { kind: 'host', host: canonical }];
      expect((await refusal(download(storage.url(route), namingIt))).message).toBe(notPublic(canonical));
      // The storage was asked (once per download); the target never was.
      expect(storage.requests(route)).toBe(2);
    });
  });

  describe('a redirect from the allowed storage elsewhere', () => {
    const targets: { target: string; location: () => string; allowlist?: () => string; reason: () => string | RegExp }[] = [
      { target: 'a host not on the allow-list', location: () => 'http://evil.example/recording', reason: () => notListed('evil.example') },
      { target: 'a lookalike of the allowed host', location: () => 'https://storage.wavoip.com.evil.example/x', reason: () => notListed('storage.wavoip.com.evil.example') },
      { target: 'another loopback port', location: () => `http://127.0.0.1:${trap.port}/recording`, reason: () => notListed(`127.0.0.1:${trap.port}`) },
      { target: 'metadata, protocol-relative', location: () => '//169.254.169.254/latest/meta-data/', reason: () => notListed('169.254.169.254') },
      { target: 'the storage by name instead of by address', location: () => `http://localhost:${new URL(storage.origin).port}/ok`, reason: () => notListed(`localhost:${new URL(storage.origin).port}`) },
      {
        target: 'an allow-listed name that resolves to loopback',
        location: () => `http://localhost:${trap.port}/recording`,
        allowlist: () => `${storageHost},localhost`,
        reason: () => /^Recording URL refused: localhost resolves to (127\.0\.0\.1|::1), not a public address$/,
      },
      { target: 'file:', location: () => 'file:///etc/passwd', reason: () => 'Recording URL refused: scheme file: is not http or https' },
      { target: 'gopher: at the trap', location: () => `gopher://127.0.0.1:${trap.port}/_GET%20/`, reason: () => 'Recording URL refused: scheme gopher: is not http or https' },
      { target: 'the storage itself, with credentials', location: () => `http://user:pass@${storageHost}/ok`, reason: () => 'Recording URL refused: credentials in the URL' },
    ];
    const rows = REDIRECT_STATUSES.flatMap((status) => targets.map((row) => ({ status, ...row })));

    it.each(rows)('$status → $target → refused', async ({ status, target, location, allowlist, reason }) => {
      const route = `/elsewhere-${status}-${encodeURIComponent(target)}`;
      storage.setRoute(route, { kind: 'redirect', status, location: location() });
      storage.setRoute('/ok', { kind: 'body', body: mp3, contentType: 'audio/mpeg' });
      const okBefore = storage.requests('/ok');

      const error = await refusal(download(storage.url(route), allowlist ? parseAllowlist(allowlist()) : realisticAllowlist()));

      expect(error.message).toMatch(typeof reason() === 'string' ? new RegExp(`^${escapeRegExp(reason() as string)}$`) : (reason() as RegExp));
      expect(storage.requests(route)).toBe(1);
      expect(storage.requests('/ok')).toBe(okBefore);
    });
  });

  describe('redirect loops', () => {
    const loops = REDIRECT_STATUSES.flatMap((status) => [
      {
        status,
        loop: 'to itself',
        routes: { [`/self-${status}`]: `/self-${status}` },
        start: `/self-${status}`,
        reason: () => `Too many redirects: redirect loop back to ${storage.url(`/self-${status}`)}`,
      },
      {
        status,
        loop: 'between two paths',
        routes: { [`/ping-${status}`]: `/pong-${status}`, [`/pong-${status}`]: `/ping-${status}` },
        start: `/ping-${status}`,
        reason: () => `Too many redirects: redirect loop back to ${storage.url(`/ping-${status}`)}`,
      },
      {
        status,
        loop: 'through another spelling of the same URL',
        routes: { [`/spelled-${status}`]: `http://0x7f.0.0.1:{port}/spelled-${status}` },
        start: `/spelled-${status}`,
        reason: () => `Too many redirects: redirect loop back to ${storage.url(`/spelled-${status}`)}`,
      },
      {
        status,
        loop: 'a chain that never repeats',
        routes: Object.fromEntries(Array.from({ length: 10 }, (_, hop) => [`/chain-${status}-${hop}`, `/chain-${status}-${hop + 1}`])),
        start: `/chain-${status}-0`,
        reason: () => 'Too many redirects: more than 5 redirects',
      },
    ]);

    it.each(loops)('$status $loop → TOO_MANY_REDIRECTS, each URL asked at most once', async ({ status, routes, start, reason }) => {
      const port = new URL(storage.origin).port;
      for (const [from, to] of Object.entries(routes)) storage.setRoute(from, { kind: 'redirect', status, location: to.replace('{port}', port) });

      const error = await refusal(download(storage.url(start), realisticAllowlist()), 'TOO_MANY_REDIRECTS');

      expect(error.message).toBe(reason());
      const asked = Object.keys(routes).map((route) => storage.requests(route));
      expect(Math.max(...asked)).toBe(1);
      expect(asked.reduce((sum, count) => sum + count, 0)).toBeLessThanOrEqual(6);
    });
  });

  describe('names that resolve to loopback', () => {
    const rows: { name: string; url: () => string; allowlist: () => string; code?: RegExp; reason: RegExp }[] = [
      {
        name: 'allow-listed localhost',
        url: () => `http://localhost:${trap.port}/recording`,
        allowlist: () => `${storageHost},localhost`,
        reason: /^Recording URL refused: localhost resolves to (127\.0\.0\.1|::1), not a public address$/,
      },
      {
        name: 'allow-listed localhost, default port',
        url: () => 'http://localhost/recording',
        allowlist: () => `${storageHost},localhost`,
        reason: /^Recording URL refused: localhost resolves to (127\.0\.0\.1|::1), not a public address$/,
      },
      {
        name: 'allow-listed localhost, spelled in upper case and percent-encoded',
        url: () => `http://%4C%4FCALHOST:${trap.port}/recording`,
        allowlist: () => `${storageHost},localhost`,
        reason: /^Recording URL refused: localhost resolves to (127\.0\.0\.1|::1), not a public address$/,
      },
      {
        name: 'localhost when only the storage address is listed',
        url: () => `http://localhost:${new URL(storage.origin).port}/ok`,
        allowlist: () => storageHost,
        reason: /^Recording URL refused: host localhost:\d+ is not in the allow-list$/,
      },
      {
        // RFC 6761 names. Resolvers that map *.localhost to loopback (systemd's) are refused at
        // DNS time; others do not resolve the name at all. Either way nothing connects.
        name: 'allow-listed *.localhost',
        url: () => `http://recordings.localhost:${trap.port}/recording`,
        allowlist: () => `${storageHost},*.localhost`,
        code: /^(URL_REFUSED|DNS_FAILED)$/,
        reason: /resolves to (127\.0\.0\.1|::1), not a public address|^could not reach recordings\.localhost:\d+: DNS lookup failed/,
      },
    ];

    it.each(rows)('$name → refused, nothing connects', async ({ url, allowlist, code, reason }) => {
      storage.setRoute('/ok', { kind: 'body', body: mp3, contentType: 'audio/mpeg' });
      const okBefore = storage.requests('/ok');
      const outcome = await download(url(), parseAllowlist(allowlist())).then(
        () => new Error('downloaded'),
        (error: unknown) => error,
      );
      expect(outcome).toBeInstanceOf(AppError);
      expect((outcome as AppError).code).toMatch(code ?? /^URL_REFUSED$/);
      expect((outcome as AppError).message).toMatch(reason);
      expect(storage.requests('/ok')).toBe(okBefore);
    });

    // What the agent's DNS hook does with each answer a hostile name could resolve to (a DNS
    // rebinding answer, say). dns.lookup answers an address literal itself, so this runs offline.
    it.each([...new Set(INTERNAL_ADDRESSES.map(({ canonical }) => canonical.replace(/^\[|\]$/g, '')))])(
      'the DNS guard refuses a name resolving to %s',
      async (address) => {
        const error = await new Promise<unknown>((resolve) => lookupPublicAddress(address, {}, (err) => resolve(err)));
        expect(error).toBeInstanceOf(AppError);
        expect(error).toMatchObject({ code: 'URL_REFUSED', retryable: false });
        expect((error as AppError).message).toMatch(/resolves to .+, not a public address$/);
      },
    );

    it.each(['8.8.8.8', '2606:4700:4700::1111', '::ffff:8.8.8.8'])('the DNS guard passes the public address %s', async (address) => {
      const answer = await new Promise<unknown>((resolve) => lookupPublicAddress(address, {}, (err, resolved) => resolve(err ?? resolved)));
      expect(answer).toBe(address);
    });
  });

  describe('non-http schemes, credentials and URLs that parse in surprising ways', () => {
    const rows: { shown: string; url: () => string; reason: () => string }[] = [
      { shown: 'file:///etc/passwd', url: () => 'file:///etc/passwd', reason: () => 'Recording URL refused: scheme file: is not http or https' },
      { shown: 'ftp://storage.wavoip.com/recording', url: () => 'ftp://storage.wavoip.com/recording', reason: () => 'Recording URL refused: scheme ftp: is not http or https' },
      { shown: 'gopher://127.0.0.1:<trap port>/_GET%20/', url: () => `gopher://127.0.0.1:${trap.port}/_GET%20/`, reason: () => 'Recording URL refused: scheme gopher: is not http or https' },
      { shown: 'data:audio/mpeg;base64,SUQzBAAAAAAAI1RTU0UAAAAPAAADTGF2ZjU4Ljc2LjEwMAAAAAAAAAAAAAAA', url: () => 'data:audio/mpeg;base64,SUQzBAAAAAAAI1RTU0UAAAAPAAADTGF2ZjU4Ljc2LjEwMAAAAAAAAAAAAAAA', reason: () => 'Recording URL refused: scheme data: is not http or https' },
      { shown: 'javascript:alert(1)', url: () => 'javascript:alert(1)', reason: () => 'Recording URL refused: scheme javascript: is not http or https' },
      { shown: 'ws://127.0.0.1:<storage port>/ok', url: () => `ws://${storageHost}/ok`, reason: () => 'Recording URL refused: scheme ws: is not http or https' },
      { shown: 'http://user:pass@127.0.0.1:<storage port>/ok', url: () => `http://user:pass@${storageHost}/ok`, reason: () => 'Recording URL refused: credentials in the URL' },
      { shown: 'http://token@127.0.0.1:<storage port>/ok', url: () => `http://token@${storageHost}/ok`, reason: () => 'Recording URL refused: credentials in the URL' },
      { shown: 'http://127.0.0.1:<storage port>@evil.example/ok', url: () => `http://${storageHost}@evil.example/ok`, reason: () => 'Recording URL refused: credentials in the URL' },
      { shown: 'http://evil.example\\@127.0.0.1:<storage port>/ok', url: () => `http://evil.example\\@${storageHost}/ok`, reason: () => notListed('evil.example') },
      { shown: 'http://127.0.0.1:<storage port>.evil.example/ok', url: () => `http://${storageHost}.evil.example/ok`, reason: () => 'Recording URL refused: not a valid absolute URL' },
      { shown: '//127.0.0.1:<storage port>/ok', url: () => `//${storageHost}/ok`, reason: () => 'Recording URL refused: not a valid absolute URL' },
      { shown: '/ok', url: () => '/ok', reason: () => 'Recording URL refused: not a valid absolute URL' },
    ];

    it.each(rows)('$shown → refused', async ({ url, reason }) => {
      storage.setRoute('/ok', { kind: 'body', body: mp3, contentType: 'audio/mpeg' });
      const okBefore = storage.requests('/ok');
      expect((await refusal(download(url(), realisticAllowlist()))).message).toBe(reason());
      expect(storage.requests('/ok')).toBe(okBefore);
    });
  });
});

describe('1. SSRF control: the trap does see a fetch the guard permits', () => {
  it.each([
    ['localhost:<trap port>', (port: number) => `localhost:${port}`, (port: number) => `http://localhost:${port}/recording`],
    ['127.0.0.1:<trap port>, URL in decimal', (port: number) => `127.0.0.1:${port}`, (port: number) => `http://2130706433:${port}/recording`],
  ])('an exact %s entry lets the download through', async (_name, entry, url) => {
    const trap = await startTrap();
    const client = createHttpClient(HTTP_TIMEOUTS);
    const tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'security-matrix-control-'));
    try {
      const result = await downloadRecording({
        url: url(trap.port),
        allowlist: parseAllowlist(entry(trap.port)),
        client,
        maxBytes: 10 * 1024 * 1024,
        tmpDir,
        storageHeadroomBytes: DATABASE_HEADROOM_BYTES,
        signal: new AbortController().signal,
      });
      expect(result.sha256).toBe(sha256(mp3));
      expect(trap.connections()).toHaveLength(1);
    } finally {
      await client.close();
      await trap.close();
      fs.rmSync(tmpDir, { recursive: true, force: true });
    }
  });
});

// =============================================================================================
// 1. SSRF through the whole service: webhook → processor → scheduler → download → API
// =============================================================================================
describe('1. SSRF through the service: READY with a hostile record_url fails at once, with the reason', () => {
  let storage: FakeWavoipStorage;
  let trap: Trap;
  let service: InProcessService;
  let storageHost: string;

  beforeAll(async () => {
    storage = await startFakeWavoipStorage();
    trap = await startTrap();
    storageHost = new URL(storage.origin).host;
    service = await startInProcessService(
      // A bare `localhost` entry, so that the DNS guard is what refuses it.
      testEnvironment(storage.origin, await makeDataDir(), { ...NO_POLLING, RECORDING_URL_ALLOWLIST: `${storageHost},storage.wavoip.com,localhost` }),
      { httpTimeouts: HTTP_TIMEOUTS },
    );
  });

  afterAll(async () => {
    await service?.stop();
    await storage?.close();
    await trap?.close();
  });

  afterEach(() => expect(trap.connections()).toEqual([]));

  const rows: { name: string; recordUrl: () => string; redirect?: { status: 301 | 302 | 307 | 308; location: () => string }; reason: () => string | RegExp }[] = [
    { name: 'loopback in decimal', recordUrl: () => `http://2130706433:${trap.port}/x`, reason: () => `Recording URL refused: host 127.0.0.1:${trap.port} is not in the allow-list` },
    { name: 'loopback in octal', recordUrl: () => `http://0177.0.0.1:${trap.port}/x`, reason: () => `Recording URL refused: host 127.0.0.1:${trap.port} is not in the allow-list` },
    { name: 'loopback in hex', recordUrl: () => `http://0x7f000001:${trap.port}/x`, reason: () => `Recording URL refused: host 127.0.0.1:${trap.port} is not in the allow-list` },
    { name: 'IPv4-mapped loopback', recordUrl: () => `http://[::ffff:127.0.0.1]:${trap.port}/x`, reason: () => `Recording URL refused: host [::ffff:7f00:1]:${trap.port} is not in the allow-list` },
    { name: 'IPv6 loopback', recordUrl: () => `http://[::1]:${trap.port}/x`, reason: () => `Recording URL refused: host [::1]:${trap.port} is not in the allow-list` },
    { name: 'cloud metadata', recordUrl: () => 'http://169.254.169.254/latest/meta-data/', reason: () => 'Recording URL refused: host 169.254.169.254 is not in the allow-list' },
    { name: 'allow-listed localhost (DNS gives loopback)', recordUrl: () => `http://localhost:${trap.port}/x`, reason: () => /^Recording URL refused: localhost resolves to (127\.0\.0\.1|::1), not a public address$/ },
    {
      name: '302 from the storage to metadata',
      recordUrl: () => storage.url('/svc-302-metadata'),
      redirect: { status: 302, location: () => 'http://169.254.169.254/latest/meta-data/' },
      reason: () => 'Recording URL refused: host 169.254.169.254 is not in the allow-list',
    },
    {
      name: '307 from the storage to allow-listed localhost',
      recordUrl: () => storage.url('/svc-307-localhost'),
      redirect: { status: 307, location: () => `http://localhost:${trap.port}/x` },
      reason: () => /^Recording URL refused: localhost resolves to (127\.0\.0\.1|::1), not a public address$/,
    },
    {
      name: '308 from the storage back to itself',
      recordUrl: () => storage.url('/svc-308-loop'),
      redirect: { status: 308, location: () => '/svc-308-loop' },
      reason: () => `Too many redirects: redirect loop back to ${storage.url('/svc-308-loop')}`,
    },
    { name: 'file:', recordUrl: () => 'file:///etc/passwd', reason: () => 'Recording URL refused: scheme file: is not http or https' },
    { name: 'credentials', recordUrl: () => `http://user:pass@${storageHost}/x`, reason: () => 'Recording URL refused: credentials in the URL' },
  ];

  it.each(rows.map((row, index) => ({ ...row, callId: `SSRF-SVC-${index}` })))('$name → failed, reason given, no retry', async ({ callId, recordUrl, redirect, reason }) => {
    if (redirect) storage.setRoute(new URL(recordUrl()).pathname, { kind: 'redirect', status: redirect.status, location: redirect.location() });
    const response = await service.postWebhook({ type: 'RECORD', whatsapp_call_id: callId, record_status: 'READY', record_url: recordUrl() });
    expect(response.status).toBe(200);

    const call = await service.waitForAttachment(callId, 'failed');

    const expected = reason();
    expect(call.attachment.reason).toMatch(typeof expected === 'string' ? new RegExp(`^${escapeRegExp(expected)}$`) : expected);
    expect(call.attachment).toMatchObject({ size: null, sha256: null });
    // Refused for good at the first attempt: not retried.
    expect(service.logs().filter((line) => line.call_id === callId && /Downloading recording/.test(line.msg))).toHaveLength(1);
    if (redirect) expect(storage.requests(new URL(recordUrl()).pathname)).toBe(1);
  });
});

// =============================================================================================
// 2. Path traversal in call ids
// =============================================================================================
describe('2. Path traversal: hostile call ids are refused or stored safely inside DATA_DIR/recordings', () => {
  let storage: FakeWavoipStorage;
  let service: InProcessService;
  let recordingsDir: string;
  let database: TestDatabase;
  const passwd = fs.existsSync('/etc/passwd') ? fs.readFileSync('/etc/passwd', 'utf8').split('\n')[0] ?? 'root:' : 'root:';
  const countEvents = async () => (await database.get<{ n: number }>('select count(*) as n from events'))?.n;

  beforeAll(async () => {
    storage = await startFakeWavoipStorage();
    const env = testEnvironment(storage.origin, await makeDataDir(), NO_POLLING);
    service = await startInProcessService(env);
    recordingsDir = path.join(service.dataDir, 'recordings');
    database = await openTestDatabase(env);
  });

  afterAll(async () => {
    await database?.close();
    await service?.stop();
    await storage?.close();
  });

  /** Accepted as given (after trimming), each recording stored as a plain file in the store. */
  const STORED_IDS: { name: string; id: string }[] = [
    { name: 'unix traversal', id: '../../etc/passwd' },
    { name: 'windows traversal', id: '..\\..\\x' },
    { name: 'percent-encoded traversal', id: '%2e%2e%2f' },
    { name: 'percent-encoded traversal to passwd', id: '%2e%2e%2f%2e%2e%2fetc%2fpasswd' },
    { name: 'absolute path', id: '/abs' },
    { name: 'hidden file', id: '.hidden' },
    { name: 'leading dash (an option to shell tools)', id: '-rf' },
    { name: 'windows drive path', id: 'C:\\Windows\\win.ini' },
    { name: 'windows device name', id: 'CON' },
    { name: 'full-width dots and slashes', id: '．．／．．／etc／passwd' },
    { name: 'two-dot leader and slash', id: '‥/‥/x' },
    { name: 'division slash', id: '..∕..∕x' },
    { name: 'fraction slash', id: '..⁄..⁄x' },
    { name: 'right-to-left override', id: '\u202e../x' },
    { name: 'emoji around a traversal', id: '🙂/../🙂' },
    { name: 'padded with spaces (trimmed)', id: '  ../padded  ' },
    { name: '128 characters of traversal (the limit)', id: `${'../'.repeat(42)}xy` },
    { name: '128 letters (the limit)', id: 'a'.repeat(128) },
  ];

  it.each(STORED_IDS.map((row, index) => ({ ...row, index })))('$name ($id) → attached, as a plain file inside recordings/', async ({ id, index }) => {
    const storedId = id.trim();
    const route = `/traversal-${index}`;
    storage.setRoute(route, { kind: 'body', body: mp3, contentType: 'audio/mpeg' });
    const before = new Set(fs.readdirSync(recordingsDir));

    const response = await service.postWebhook({ type: 'RECORD', whatsapp_call_id: id, record_status: 'READY', record_url: storage.url(route) });
    expect(response.status).toBe(200);
    let call: CallView | undefined;
    await waitFor(async () => {
      const answer = await rawRequest(service.url, 'GET', `/api/calls/${pathSegment(storedId)}`, { authorization: `Bearer ${API_TOKEN}` });
      call = answer.status === 200 ? (JSON.parse(answer.body.toString('utf8')) as CallView) : undefined;
      return call?.attachment.state === 'attached';
    }, `call ${storedId} to be attached`);

    // The id is kept exactly (not mangled), and its recording is the one new entry in recordings/.
    expect(call?.whatsapp_call_id).toBe(storedId);
    const added = fs.readdirSync(recordingsDir).filter((name) => !before.has(name));
    const key = recordingKeyFor(storedId, sha256(mp3), 'mp3');
    expect(added).toEqual([key]);
    const file = path.resolve(recordingsDir, key);
    const relative = path.relative(recordingsDir, file);
    expect(relative).toBe(key);
    expect(path.isAbsolute(relative) || relative.startsWith('..') || relative.includes(path.sep)).toBe(false);
    expect(sha256(fs.readFileSync(file))).toBe(sha256(mp3));

    // And the API serves exactly that file for the id.
    const served = await rawRequest(service.url, 'GET', `/api/calls/${pathSegment(storedId)}/recording`, { authorization: `Bearer ${API_TOKEN}` });
    expect(served.status).toBe(200);
    expect(sha256(served.body)).toBe(sha256(mp3));
  });

  const REFUSED_IDS: { name: string; value: unknown; error: RegExp }[] = [
    { name: 'NUL', value: 'a\u0000b', error: /control characters/ },
    { name: 'NUL inside a traversal', value: '../\u0000/etc/passwd', error: /control characters/ },
    { name: 'a newline (log forging)', value: 'x\n[WaVoIP Webhook] forged', error: /control characters/ },
    { name: 'a lone surrogate', value: '\ud800', error: /valid Unicode/ },
    { name: '129 characters', value: 'a'.repeat(129), error: /at most 128 characters/ },
    { name: 'a very long traversal (10,000 characters)', value: '../'.repeat(3_334), error: /at most 128 characters/ },
    { name: 'empty', value: '', error: /must not be empty/ },
    { name: 'only spaces', value: '   ', error: /must not be empty/ },
    // URL parsers read these as path steps, so the call's API URL could never name it.
    { name: 'dot-dot alone', value: '..', error: /must not be "\." or "\.\."/ },
    { name: 'dot alone', value: '.', error: /must not be "\." or "\.\."/ },
    { name: 'dot-dot padded with spaces', value: ' .. ', error: /must not be "\." or "\.\."/ },
    { name: 'an object', value: { toString: '../../etc/passwd' }, error: /must be a string or a number/ },
    { name: 'an array of path segments', value: ['..', '..', 'etc', 'passwd'], error: /must be a string or a number/ },
    { name: 'a number beyond 2^53', value: 2 ** 53, error: /below 2\^53/ },
  ];

  it.each(REFUSED_IDS)('$name → 400 naming whatsapp_call_id, nothing stored', async ({ value, error }) => {
    const before = await countEvents();
    const files = fs.readdirSync(recordingsDir).sort();

    const response = await service.postWebhook({ type: 'RECORD', whatsapp_call_id: value, record_status: 'READY', record_url: storage.url('/never') });

    expect(response.status).toBe(400);
    const answer = (await response.json()) as { error: string; field: string };
    expect(answer.field).toBe('whatsapp_call_id');
    expect(answer.error).toMatch(/whatsapp_call_id/);
    expect(answer.error).toMatch(error);
    expect(await countEvents()).toBe(before);
    expect(fs.readdirSync(recordingsDir).sort()).toEqual(files);
    expect(storage.requests('/never')).toBe(0);
  });

  it('has written nothing anywhere in DATA_DIR but the database, the store and its empty temp directory', () => {
    const found: string[] = [];
    const walk = (dir: string) => {
      for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
        const full = path.join(dir, entry.name);
        if (entry.isDirectory()) walk(full);
        else found.push(path.relative(service.dataDir, full));
      }
    };
    walk(service.dataDir);
    const outsideStore = found.filter((file) => path.dirname(file) !== 'recordings');
    // On PostgreSQL the database lives on the server: nothing at all outside the store.
    const isDatabaseFile = (file: string) => testDialect === 'sqlite' && /^wavoip-recordings\.sqlite(-wal|-shm)?$/.test(file);
    expect(outsideStore.filter((file) => !isDatabaseFile(file))).toEqual([]);
    // In the temp directory, only this process's own area and its lock (their files, none, are counted above).
    expect(fs.readdirSync(path.join(recordingsDir, '.tmp'))).toEqual([expect.stringMatching(/^[0-9a-f-]{36}$/), expect.stringMatching(/^[0-9a-f-]{36}\.lock$/)]);
    expect(found.filter((file) => path.dirname(file) === 'recordings')).toHaveLength(STORED_IDS.length);
  });

  /**
   * Raw request targets (node:http sends the path byte for byte; fetch would resolve the dots).
   * `recording` rows name a call stored above: its own recording is served, nothing else.
   */
  const API_PATHS: { target: string; expected: 'recording' | 400 | 404 }[] = [
    { target: '/api/calls/..%2F..%2Fetc%2Fpasswd/recording', expected: 'recording' },
    { target: '/api/calls/%2e%2e%2f%2e%2e%2fetc%2fpasswd/recording', expected: 'recording' },
    { target: '/api/calls/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd/recording', expected: 'recording' },
    { target: '/api/calls/..%5C..%5Cx/recording', expected: 'recording' },
    { target: '/api/calls/%2Fabs/recording', expected: 'recording' },
    { target: '/api/calls/%2e%2e/recording', expected: 404 },
    { target: '/api/calls/%252e%252e%252f/recording', expected: 'recording' },
    { target: '/api/calls/..%2F..%2F..%2F..%2F..%2F..%2Fetc%2Fshadow/recording', expected: 404 },
    { target: '/api/calls/%2Fetc%2Fpasswd/recording', expected: 404 },
    { target: '/api/calls/%00/recording', expected: 404 },
    { target: '/api/calls/..%00/recording', expected: 404 },
    { target: '/api/calls/..%252F..%252Fetc%252Fpasswd/recording', expected: 404 },
    { target: '/api/calls/../../../etc/passwd', expected: 404 },
    { target: '/api/calls/x/recording/../../../../../etc/passwd', expected: 404 },
    { target: '/api/../../../../etc/passwd', expected: 404 },
    { target: '/api/calls/%2e%2e/%2e%2e/etc/passwd', expected: 404 },
    { target: '/api/calls/%ZZ/recording', expected: 400 },
    { target: `/api/calls/${'..%2F'.repeat(200)}etc%2Fpasswd/recording`, expected: 400 },
  ];

  it.each(API_PATHS)('GET $target → $expected', async ({ target, expected }) => {
    const response = await rawRequest(service.url, 'GET', target, { authorization: `Bearer ${API_TOKEN}` });
    expect(response.body.toString('utf8')).not.toContain(passwd);
    if (expected === 'recording') {
      expect(response.status).toBe(200);
      expect(response.headers['content-type']).toBe('audio/mpeg');
      expect(sha256(response.body)).toBe(sha256(mp3));
      return;
    }
    expect(response.status).toBe(expected);
    expect(response.headers['content-type']).toMatch(/^application\/json/);
    expect(typeof (JSON.parse(response.body.toString('utf8')) as { error?: unknown }).error).toBe('string');
  });
});

// =============================================================================================
// 3. Authentication
// =============================================================================================
describe('3. Authentication: every API route wants the API token; health stays open; webhooks want theirs', () => {
  let storage: FakeWavoipStorage;
  let service: InProcessService;
  let database: TestDatabase;
  const countEvents = async () => (await database.get<{ n: number }>('select count(*) as n from events'))?.n;

  beforeAll(async () => {
    storage = await startFakeWavoipStorage();
    const env = testEnvironment(storage.origin, await makeDataDir(), NO_POLLING);
    service = await startInProcessService(env);
    database = await openTestDatabase(env);
    storage.setRoute('/AUTH-ATTACHED', { kind: 'body', body: mp3, contentType: 'audio/mpeg' });
    // Applied before the READYs below (events are applied in order), so it is there when they are.
    await service.postWebhook({ type: 'DEVICE', action: 'UPDATE', id_session: 'AUTH-DEVICE', phone: '5511911112222', status: 'open' });
    await service.postWebhook({ type: 'RECORD', whatsapp_call_id: 'AUTH-ATTACHED', record_status: 'READY', record_url: storage.url('/AUTH-ATTACHED') });
    await service.postWebhook({ type: 'RECORD', whatsapp_call_id: 'AUTH-FAILED', record_status: 'READY', record_url: 'http://10.0.0.1/x' });
    await service.waitForAttachment('AUTH-ATTACHED', 'attached');
    await service.waitForAttachment('AUTH-FAILED', 'failed');
  });

  afterAll(async () => {
    await database?.close();
    await service?.stop();
    await storage?.close();
  });

  const API_ROUTES = [
    { method: 'GET', route: '/api/calls' },
    { method: 'GET', route: '/api/calls/AUTH-ATTACHED' },
    { method: 'GET', route: '/api/calls/AUTH-ATTACHED/recording' },
    { method: 'HEAD', route: '/api/calls/AUTH-ATTACHED/recording' },
    { method: 'POST', route: '/api/calls/AUTH-FAILED/retry' },
    { method: 'GET', route: '/api/devices' },
    { method: 'GET', route: '/api/devices/AUTH-DEVICE' },
    { method: 'GET', route: '/api/webhook-tokens' },
    { method: 'POST', route: '/api/webhook-tokens' },
    { method: 'DELETE', route: '/api/webhook-tokens/AUTH-TOKEN' },
  ] as const;

  const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
  const WRONG_CREDENTIALS: { credential: string; headers?: Record<string, string>; query?: string }[] = [
    { credential: 'no token' },
    { credential: 'a wrong Bearer token', headers: { authorization: 'Bearer not-the-api-token' } },
    { credential: 'the API token plus a character', headers: { authorization: `Bearer ${API_TOKEN}x` } },
    { credential: 'the API token less its last character', headers: { authorization: `Bearer ${API_TOKEN.slice(0, -1)}` } },
    { credential: 'an empty Bearer', headers: { authorization: 'Bearer ' } },
    { credential: 'the API token under Basic', headers: { authorization: basic('api', API_TOKEN) } },
    { credential: 'the API token as a Basic password-less user', headers: { authorization: basic(API_TOKEN, '') } },
    { credential: 'the API token with no scheme', headers: { authorization: API_TOKEN } },
    { credential: 'the API token in ?token=', query: `token=${API_TOKEN}` },
    { credential: 'the API token in ?access_token=', query: `access_token=${API_TOKEN}` },
    { credential: 'the API token in X-Api-Token', headers: { 'x-api-token': API_TOKEN } },
    { credential: 'the webhook token as Bearer', headers: { authorization: `Bearer ${WEBHOOK_TOKEN}` } },
    { credential: 'the webhook token in X-Webhook-Token', headers: { 'x-webhook-token': WEBHOOK_TOKEN } },
    { credential: 'the webhook token in ?token=', query: `token=${WEBHOOK_TOKEN}` },
  ];
  const rows = WRONG_CREDENTIALS.flatMap((credential) => API_ROUTES.map((route) => ({ ...credential, ...route })));

  it.each(rows)('$credential: $method $route → 401', async ({ method, route, headers, query }) => {
    const response = await fetch(`${service.url}${route}${query ? `?${query}` : ''}`, { method, headers });
    expect(response.status).toBe(401);
    expect(response.headers.get('www-authenticate')).toBe('Bearer');
    expect(response.headers.get('content-type')).toMatch(/^application\/json/);
    if (method !== 'HEAD') expect(((await response.json()) as { error: string }).error).toMatch(/API token/);
  });

  it('does not retry the failed call for a refused POST, whatever wrong credential it brings', async () => {
    const before = await service.call('AUTH-FAILED');
    expect(before.attachment.state).toBe('failed');
    for (const { credential, headers, query } of WRONG_CREDENTIALS) {
      const response = await fetch(`${service.url}/api/calls/AUTH-FAILED/retry${query ? `?${query}` : ''}`, { method: 'POST', headers });
      expect(response.status, credential).toBe(401);
    }
    expect((await service.call('AUTH-FAILED')).attachment).toEqual(before.attachment);
  });

  it.each(API_ROUTES.filter(({ method }) => method !== 'POST' && method !== 'DELETE'))('control: the right token gets $method $route', async ({ method, route }) => {
    expect((await service.api(route, { method })).status).toBe(200);
  });

  it.each([
    ['/healthz', {}],
    ['/healthz', { authorization: 'Bearer wrong' }],
    ['/readyz', {}],
    ['/readyz', { authorization: 'Basic d3Jvbmc6d3Jvbmc=' }],
  ])('%s stays open (headers %j) → 200', async (route, headers) => {
    expect((await fetch(`${service.url}${route}`, { headers })).status).toBe(200);
  });

  const WEBHOOK_REFUSALS: { credential: string; query?: string; headers?: Record<string, string> }[] = [
    { credential: 'no token' },
    { credential: 'a wrong token', query: 'token=wrong-webhook-token' },
    { credential: 'an empty token', query: 'token=' },
    { credential: 'the webhook token plus a character', query: `token=${WEBHOOK_TOKEN}x` },
    { credential: 'the API token', query: `token=${API_TOKEN}` },
    { credential: 'the API token as Bearer', headers: { authorization: `Bearer ${API_TOKEN}` } },
    { credential: 'the token twice', query: `token=${WEBHOOK_TOKEN}&token=${WEBHOOK_TOKEN}` },
    { credential: 'a wrong X-Webhook-Token', headers: { 'x-webhook-token': 'wrong-webhook-token' } },
  ];

  it.each(WEBHOOK_REFUSALS.map((row, index) => ({ ...row, callId: `AUTH-WEBHOOK-${index}` })))(
    'webhook with $credential → 401, nothing stored',
    async ({ query, headers, callId }) => {
      const before = await countEvents();
      const response = await fetch(`${service.url}/webhooks/wavoip${query ? `?${query}` : ''}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...headers },
        body: JSON.stringify({ type: 'RECORD', whatsapp_call_id: callId, record_status: 'READY', record_url: storage.url('/never') }),
      });
      expect(response.status).toBe(401);
      expect(((await response.json()) as { error: string }).error).toMatch(/webhook token/);
      expect(await countEvents()).toBe(before);
      expect((await service.api(`/api/calls/${callId}`)).status).toBe(404);
    },
  );

  describe('after API_TOKEN changes and the service restarts, the old token is refused everywhere', () => {
    const OLD_TOKEN = 'old-api-token-0123456789';
    const NEW_TOKEN = 'new-api-token-9876543210';

    it.each([
      { change: 'API_TOKEN set to another value', next: NEW_TOKEN },
      { change: 'API_TOKEN removed (a token is generated into DATA_DIR)', next: '' },
    ])('$change', async ({ next }) => {
      const dataDir = await makeDataDir();
      const firstEnv = testEnvironment(storage.origin, dataDir, { ...NO_POLLING, API_TOKEN: OLD_TOKEN });
      const first = await startInProcessService(firstEnv);
      try {
        await first.postWebhook({ type: 'RECORD', whatsapp_call_id: 'RESTART-FAILED', record_status: 'READY', record_url: 'http://10.0.0.1/x' });
        first.apiToken = OLD_TOKEN;
        await first.waitForAttachment('RESTART-FAILED', 'failed');
      } finally {
        await first.stop();
      }

      // The same service restarted: same DATA_DIR, same database.
      const second = await startInProcessService({ ...firstEnv, API_TOKEN: next });
      try {
        const current = next === '' ? fs.readFileSync(path.join(dataDir, 'api-token'), 'utf8').trim() : next;
        expect(current).not.toBe(OLD_TOKEN);
        for (const { method, route } of [
          { method: 'GET', route: '/api/calls' },
          { method: 'GET', route: '/api/calls/RESTART-FAILED' },
          { method: 'GET', route: '/api/calls/RESTART-FAILED/recording' },
          { method: 'POST', route: '/api/calls/RESTART-FAILED/retry' },
        ]) {
          const response = await fetch(`${second.url}${route}`, { method, headers: { authorization: `Bearer ${OLD_TOKEN}` } });
          expect({ method, route, status: response.status }).toEqual({ method, route, status: 401 });
        }
        second.apiToken = current;
        expect((await second.call('RESTART-FAILED')).attachment.state).toBe('failed');
      } finally {
        await second.stop();
      }
    });
  });
});

// =============================================================================================
// 4. Secrets never reach the log
// =============================================================================================
describe('4. Secrets never reach the log', () => {
  // Letters, digits and dashes only, so that no encoding could hide them from the search.
  const WEBHOOK_SECRET = 'whsec-LogCheck-7f3a9c2e';
  const API_SECRET = 'apisec-LogCheck-4b8d1e6f';
  const WRONG_SECRET = 'wrongsec-LogCheck-0c5e2a91';
  let storage: FakeWavoipStorage;
  let service: InProcessService;

  beforeAll(async () => {
    storage = await startFakeWavoipStorage();
    service = await startInProcessService(
      testEnvironment(storage.origin, await makeDataDir(), { WEBHOOK_TOKEN: WEBHOOK_SECRET, API_TOKEN: API_SECRET, LOG_LEVEL: 'trace' }),
      { httpTimeouts: HTTP_TIMEOUTS },
    );
    service.apiToken = API_SECRET;
  });

  afterAll(async () => {
    await service?.stop();
    await storage?.close();
  });

  const webhook = (query: string, init: { headers?: Record<string, string>; body?: string } = {}) =>
    fetch(`${service.url}/webhooks/wavoip${query}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...init.headers },
      body: init.body ?? JSON.stringify({ type: 'RECORD', whatsapp_call_id: 'LOG-PLAIN', record_status: 'MIXING' }),
    });
  /** A READY whose record_url carries a secret; resolves once the attachment has settled. */
  async function readyWith(callId: string, recordUrl: string, settlesAs: 'attached' | 'failed'): Promise<number> {
    const response = await webhook(`?token=${WEBHOOK_SECRET}`, {
      body: JSON.stringify({ type: 'RECORD', whatsapp_call_id: callId, record_status: 'READY', record_url: recordUrl }),
    });
    await service.waitForAttachment(callId, settlesAs);
    // The log did capture this call's lines, so that an absence below means something.
    expect(service.logs().filter((line) => line.call_id === callId).length).toBeGreaterThan(1);
    return response.status;
  }

  const rows: { name: string; secrets: () => string[]; send: () => Promise<Response | number>; status: number }[] = [
    { name: 'webhook, right ?token=', secrets: () => [WEBHOOK_SECRET], send: () => webhook(`?token=${WEBHOOK_SECRET}`), status: 200 },
    { name: 'webhook, wrong ?token=', secrets: () => [WRONG_SECRET], send: () => webhook(`?token=${WRONG_SECRET}`), status: 401 },
    { name: 'webhook, token name percent-encoded (%74oken=)', secrets: () => [WEBHOOK_SECRET], send: () => webhook(`?%74oken=${WEBHOOK_SECRET}`), status: 200 },
    { name: 'webhook, token repeated', secrets: () => [WEBHOOK_SECRET], send: () => webhook(`?token=${WEBHOOK_SECRET}&token=${WEBHOOK_SECRET}`), status: 401 },
    { name: 'webhook, wrong and right token', secrets: () => [WEBHOOK_SECRET, WRONG_SECRET], send: () => webhook(`?token=${WRONG_SECRET}&%74oken=${WEBHOOK_SECRET}`), status: 401 },
    { name: 'webhook, X-Webhook-Token header', secrets: () => [WEBHOOK_SECRET], send: () => webhook('', { headers: { 'x-webhook-token': WEBHOOK_SECRET } }), status: 200 },
    { name: 'webhook, right token, broken JSON', secrets: () => [WEBHOOK_SECRET], send: () => webhook(`?token=${WEBHOOK_SECRET}`, { body: '{"type":' }), status: 400 },
    { name: 'webhook, right token, body over the limit', secrets: () => [WEBHOOK_SECRET], send: () => webhook(`?token=${WEBHOOK_SECRET}`, { body: JSON.stringify({ pad: 'x'.repeat(70_000) }) }), status: 413 },
    { name: 'webhook GET hint with ?token=', secrets: () => [WEBHOOK_SECRET], send: () => fetch(`${service.url}/webhooks/wavoip?token=${WEBHOOK_SECRET}`), status: 200 },
    { name: 'API, Authorization: Bearer (right)', secrets: () => [API_SECRET], send: () => fetch(`${service.url}/api/calls`, { headers: { authorization: `Bearer ${API_SECRET}` } }), status: 200 },
    { name: 'API, Authorization: Bearer (wrong)', secrets: () => [WRONG_SECRET], send: () => fetch(`${service.url}/api/calls`, { headers: { authorization: `Bearer ${WRONG_SECRET}` } }), status: 401 },
    { name: 'API, ?token= (right, refused)', secrets: () => [API_SECRET], send: () => fetch(`${service.url}/api/calls?token=${API_SECRET}`), status: 401 },
    { name: 'API, Bearer and a bad query', secrets: () => [API_SECRET], send: () => fetch(`${service.url}/api/calls?limit=abc`, { headers: { authorization: `Bearer ${API_SECRET}` } }), status: 400 },
    { name: 'unknown route with ?token= repeated', secrets: () => [API_SECRET], send: () => fetch(`${service.url}/api/nope?token=${API_SECRET}&token=${API_SECRET}`), status: 404 },
    {
      name: 'READY, record_url with ?token=',
      secrets: () => ['urlsec-Query-1a2b3c'],
      send: () => {
        storage.setRoute('/LOG-QUERY', { kind: 'body', body: mp3, contentType: 'audio/mpeg' });
        return readyWith('LOG-QUERY', storage.url('/LOG-QUERY?token=urlsec-Query-1a2b3c'), 'attached');
      },
      status: 200,
    },
    {
      name: 'READY, record_url with &device_token=',
      secrets: () => ['urlsec-Device-4d5e6f'],
      send: () => {
        storage.setRoute('/LOG-DEVICE', { kind: 'body', body: mp3, contentType: 'audio/mpeg' });
        return readyWith('LOG-DEVICE', storage.url('/LOG-DEVICE?x=1&device_token=urlsec-Device-4d5e6f'), 'attached');
      },
      status: 200,
    },
    {
      name: 'READY, record_url with %74oken=',
      secrets: () => ['urlsec-Encoded-7a8b9c'],
      send: () => {
        storage.setRoute('/LOG-ENCODED', { kind: 'body', body: mp3, contentType: 'audio/mpeg' });
        return readyWith('LOG-ENCODED', storage.url('/LOG-ENCODED?%74oken=urlsec-Encoded-7a8b9c'), 'attached');
      },
      status: 200,
    },
    {
      name: 'READY, redirected to a URL with ?token=',
      secrets: () => ['urlsec-Redirect-0d1e2f'],
      send: () => {
        storage.setRoute('/LOG-REDIRECT', { kind: 'redirect', status: 302, location: '/LOG-REDIRECT-FINAL?token=urlsec-Redirect-0d1e2f' });
        storage.setRoute('/LOG-REDIRECT-FINAL', { kind: 'body', body: mp3, contentType: 'audio/mpeg' });
        return readyWith('LOG-REDIRECT', storage.url('/LOG-REDIRECT'), 'attached');
      },
      status: 200,
    },
    {
      name: 'READY, record_url with ?token= retried after a 503',
      secrets: () => ['urlsec-Retry-3a4b5c'],
      send: () => {
        storage.setRoute('/LOG-RETRY', { kind: 'sequence', times: 1, first: { kind: 'status', status: 503 }, then: { kind: 'body', body: mp3, contentType: 'audio/mpeg' } });
        return readyWith('LOG-RETRY', storage.url('/LOG-RETRY?token=urlsec-Retry-3a4b5c'), 'attached');
      },
      status: 200,
    },
    {
      name: 'READY, refused record_url with ?token=',
      secrets: () => ['urlsec-Refused-6d7e8f'],
      send: () => readyWith('LOG-REFUSED', 'http://evil.example/x?token=urlsec-Refused-6d7e8f', 'failed'),
      status: 200,
    },
    {
      name: 'READY, record_url with a password in it',
      secrets: () => ['urlsec-Password-9a0b1c'],
      send: () => readyWith('LOG-PASSWORD', `http://wavoip:urlsec-Password-9a0b1c@${new URL(storage.origin).host}/x`, 'failed'),
      status: 200,
    },
  ];

  it.each(rows)('$name → no log line holds the secret', async ({ secrets, send, status }) => {
    const sent = await send();
    expect(typeof sent === 'number' ? sent : sent.status).toBe(status);
    const leaking = service
      .logs()
      .map((line) => JSON.stringify(line))
      .filter((line) => secrets().some((secret) => line.includes(secret)));
    expect(leaking).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------

interface RawResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

/** One request with the target sent exactly as given (no dot-segment resolution, no re-encoding). */
function rawRequest(base: string, method: string, target: string, headers: Record<string, string> = {}): Promise<RawResponse> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve, reject) => {
    const request = httpRequest({ host: hostname, port, method, path: target, headers }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, headers: response.headers, body: Buffer.concat(chunks) }));
      response.on('error', reject);
    });
    request.on('error', reject);
    request.end();
  });
}

/**
 * A call id as one path segment, for rawRequest: a WHATWG URL (fetch) turns the ids "." and
 * "..", even as %2E, into dot segments and asks for another path.
 */
function pathSegment(callId: string): string {
  return encodeURIComponent(callId).replaceAll('.', '%2E');
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
