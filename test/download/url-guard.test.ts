import { describe, expect, it } from 'vitest';
import type { LookupAddress } from 'node:dns';
import { AppError } from '../../src/errors.ts';
import { checkRecordingUrl, isPublicUnicast, lookupPublicAddress, parseAllowlist } from '../../src/download/url-guard.ts';

function expectAppError(run: () => unknown, code: string): AppError {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(AppError);
    expect((error as AppError).code).toBe(code);
    return error as AppError;
  }
  throw new Error(`expected AppError ${code}, nothing was thrown`);
}

describe('parseAllowlist', () => {
  it.each([
    ['storage.wavoip.com', [{ kind: 'host', host: 'storage.wavoip.com' }]],
    [' Storage.WaVoIP.com , ,*.wavoip.com ', [
      { kind: 'host', host: 'storage.wavoip.com' },
      { kind: 'subdomains', suffix: '.wavoip.com' },
    ]],
    ['minio:9000', [{ kind: 'host-port', host: 'minio', port: 9000 }]],
    ['127.0.0.1:8080', [{ kind: 'host-port', host: '127.0.0.1', port: 8080 }]],
    ['[::1]:8080', [{ kind: 'host-port', host: '[::1]', port: 8080 }]],
    ['0x7f000001:80', [{ kind: 'host-port', host: '127.0.0.1', port: 80 }]],
    ['8.8.8.8', [{ kind: 'host', host: '8.8.8.8' }]],
    ['', []],
  ])('parses %j', (raw, expected) => {
    expect(parseAllowlist(raw)).toEqual(expected);
  });

  it.each([
    ['https://storage.wavoip.com', 'https://storage.wavoip.com'],
    ['storage.wavoip.com/path', 'storage.wavoip.com/path'],
    ['user@storage.wavoip.com', 'user@storage.wavoip.com'],
    ['*.wavoip.com:443', '*.wavoip.com:443'],
    ['foo.*.com', 'foo.*.com'],
    ['*', '*'],
    ['host:0', 'host:0'],
    ['host:70000', 'host:70000'],
    ['::1', '::1'],
    ['10.0.0.5', '10.0.0.5'],
    ['ok.com, bad host', 'bad host'],
  ])('refuses %j, naming the bad entry', (raw, badEntry) => {
    const error = expectAppError(() => parseAllowlist(raw), 'INVALID_ALLOWLIST');
    expect(error.message).toContain(`"${badEntry}"`);
  });
});

describe('checkRecordingUrl', () => {
  const allowlist = parseAllowlist('storage.wavoip.com,*.cdn.wavoip.com,127.0.0.1:8080,[::1]:9000,8.8.8.8');

  it.each([
    ['https://storage.wavoip.com/3528B6CDB8D38FDA', false],
    ['http://storage.wavoip.com:8443/abc', false],
    ['https://eu.cdn.wavoip.com/abc', false],
    ['https://a.b.cdn.wavoip.com/abc', false],
    ['http://127.0.0.1:8080/abc', true],
    ['http://2130706433:8080/abc', true],
    ['http://[::1]:9000/abc', true],
    ['https://8.8.8.8/abc', false],
    ['https://134744072/abc', false],
  ])('accepts %s (allowPrivate %s)', (raw, allowPrivate) => {
    const checked = checkRecordingUrl(raw, allowlist);
    expect(checked.allowPrivate).toBe(allowPrivate);
    expect(checked.url).toBeInstanceOf(URL);
  });

  it.each([
    ['not a url', 'not a valid'],
    ['file:///etc/passwd', 'scheme'],
    ['ftp://storage.wavoip.com/x', 'scheme'],
    ['gopher://storage.wavoip.com:70/x', 'scheme'],
    ['data:audio/ogg;base64,AAAA', 'scheme'],
    ['javascript:alert(1)', 'scheme'],
    ['https://user:pass@storage.wavoip.com/x', 'credentials'],
    ['https://token@storage.wavoip.com/x', 'credentials'],
    ['https://evil.com/x', 'not in the allow-list'],
    ['https://storage.wavoip.com.evil.com/x', 'not in the allow-list'],
    ['https://evilstorage.wavoip.com/x', 'not in the allow-list'],
    ['https://cdn.wavoip.com/x', 'not in the allow-list'],
    ['https://evilcdn.wavoip.com/x', 'not in the allow-list'],
    ['http://127.0.0.1:8081/x', 'not in the allow-list'],
    ['http://127.0.0.1/x', 'not in the allow-list'],
    ['http://localhost:8080/x', 'not in the allow-list'],
    ['http://[::1]:8080/x', 'not in the allow-list'],
  ])('refuses %s', (raw, reason) => {
    const error = expectAppError(() => checkRecordingUrl(raw, allowlist), 'URL_REFUSED');
    expect(error.retryable).toBe(false);
    expect(error.message).toContain(reason);
  });

  // A hostname entry matches on any port, so only the address check stands between these and the
  // internal network; each names a non-public address in a form a naive string check would miss.
  it.each([
    ['http://2130706433/', '127.0.0.1'],
    ['http://0177.0.0.1/', '127.0.0.1'],
    ['http://0x7f000001/', '127.0.0.1'],
    ['http://127.1/', '127.0.0.1'],
    ['http://169.254.169.254/latest/meta-data', '169.254.169.254'],
    ['http://10.1.2.3/', '10.1.2.3'],
    ['http://192.168.0.10/', '192.168.0.10'],
    ['http://172.16.5.4/', '172.16.5.4'],
    ['http://100.64.0.1/', '100.64.0.1'],
    ['http://0.0.0.0/', '0.0.0.0'],
    ['http://224.0.0.1/', '224.0.0.1'],
    ['http://255.255.255.255/', '255.255.255.255'],
    ['http://[::1]/', '[::1]'],
    ['http://[::]/', '[::]'],
    ['http://[::ffff:127.0.0.1]/', '[::ffff:7f00:1]'],
    ['http://[::ffff:10.0.0.1]/', '[::ffff:a00:1]'],
    ['http://[fc00::1]/', '[fc00::1]'],
    ['http://[fe80::1]/', '[fe80::1]'],
    ['http://[64:ff9b::7f00:1]/', '[64:ff9b::7f00:1]'],
  ])('refuses non-public %s even when allow-listed by host', (raw, canonicalHost) => {
    const allowlistNamingIt = [{ kind: 'host' as const, host: canonicalHost }];
    const error = expectAppError(() => checkRecordingUrl(raw, allowlistNamingIt), 'URL_REFUSED');
    expect(error.message).toContain('not a public address');
  });

  it('allows a non-public address only through its exact host:port entry', () => {
    expect(checkRecordingUrl('http://0x7f000001:80/x', parseAllowlist('127.0.0.1:80')).allowPrivate).toBe(true);
    expect(checkRecordingUrl('http://10.0.0.5/x', parseAllowlist('10.0.0.5:80')).allowPrivate).toBe(true);
    expect(checkRecordingUrl('https://10.0.0.5/x', parseAllowlist('10.0.0.5:443')).allowPrivate).toBe(true);
    expectAppError(() => checkRecordingUrl('https://10.0.0.5/x', parseAllowlist('10.0.0.5:80')), 'URL_REFUSED');
  });

  it('gives allowPrivate for an exact hostname:port entry, not for a bare hostname entry', () => {
    expect(checkRecordingUrl('http://minio:9000/x', parseAllowlist('minio:9000')).allowPrivate).toBe(true);
    expect(checkRecordingUrl('http://minio:9000/x', parseAllowlist('minio')).allowPrivate).toBe(false);
  });
});

describe('isPublicUnicast', () => {
  it.each([
    ['8.8.8.8', true],
    ['2606:4700:4700::1111', true],
    ['::ffff:8.8.8.8', true],
    ['127.0.0.1', false],
    ['::ffff:127.0.0.1', false],
    ['::ffff:169.254.169.254', false],
    ['not an address', false],
  ])('%s → %s', (address, expected) => {
    expect(isPublicUnicast(address)).toBe(expected);
  });
});

describe('lookupPublicAddress', () => {
  function lookup(hostname: string, all: boolean): Promise<{ address: string | LookupAddress[]; family?: number }> {
    return new Promise((resolve, reject) => {
      lookupPublicAddress(hostname, { all }, (err, address, family) =>
        err ? reject(err) : resolve({ address, family }),
      );
    });
  }

  it('refuses localhost, which resolves to loopback', async () => {
    const error = await lookup('localhost', false).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AppError);
    expect((error as AppError).code).toBe('URL_REFUSED');
    expect((error as AppError).message).toContain('localhost resolves to');
  });

  it('refuses a private address in the all-addresses form too', async () => {
    await expect(lookup('10.0.0.1', true)).rejects.toMatchObject({ code: 'URL_REFUSED' });
  });

  // dns.lookup answers an IP literal without asking a resolver, so this runs offline.
  it('passes a public address through in both callback forms', async () => {
    await expect(lookup('93.184.215.14', false)).resolves.toEqual({ address: '93.184.215.14', family: 4 });
    await expect(lookup('93.184.215.14', true)).resolves.toEqual({
      address: [{ address: '93.184.215.14', family: 4 }],
      family: undefined,
    });
  });
});
