import dns from 'node:dns';
import type { LookupAddress, LookupOptions } from 'node:dns';
import ipaddr from 'ipaddr.js';
import { AppError } from '../errors.ts';

/**
 * Recording URLs arrive in unauthenticated webhooks, so anyone who finds the webhook URL can make
 * us fetch an arbitrary URL. Only allow-listed hosts are fetched, and private addresses only when
 * an operator named that exact host:port (a MinIO in the same network, a test server).
 */
export type AllowlistEntry =
  | { kind: 'host'; host: string }
  /** `*.wavoip.com`, stored as `.wavoip.com`: subdomains only, not the bare domain. */
  | { kind: 'subdomains'; suffix: string }
  | { kind: 'host-port'; host: string; port: number };

interface CheckedUrl {
  url: URL;
  /** True only when the exact host:port is an entry; the caller then skips the DNS guard. */
  allowPrivate: boolean;
}

// Characters of hostnames, IP literals (with brackets), ports and the leading wildcard; anything
// else (`/`, `@`, `?`, `#`, spaces) means the entry is a URL or a typo, not a host.
const ENTRY_CHARACTERS = /^[a-z0-9._\-[\]:*]+$/;
const EXPLICIT_PORT = /^(.*[^:]):(\d{1,5})$/;

export function parseAllowlist(raw: string): AllowlistEntry[] {
  return raw
    .split(',')
    .map((entry) => entry.trim().toLowerCase())
    .filter((entry) => entry !== '')
    .map(parseAllowlistEntry);
}

function parseAllowlistEntry(entry: string): AllowlistEntry {
  const refuse = (why: string): never => {
    throw new AppError(`Invalid allow-list entry "${entry}": ${why}`, { code: 'INVALID_ALLOWLIST' });
  };
  if (!ENTRY_CHARACTERS.test(entry)) refuse('expected a hostname, *.domain or host:port');

  if (entry.startsWith('*.')) {
    const suffix = normaliseHost(entry.slice(2));
    if (suffix === null || isIpLiteral(suffix)) {
      refuse('a wildcard must be followed by a domain name, without a port');
    }
    return { kind: 'subdomains', suffix: `.${suffix}` };
  }
  if (entry.includes('*')) refuse('a wildcard is only allowed as a leading "*."');

  // An unbracketed IPv6 address also ends in ":digits": normaliseHost refuses its "host" part.
  const portMatch = EXPLICIT_PORT.exec(entry);
  const hostBeforePort = portMatch ? normaliseHost(portMatch[1]!) : null;
  if (portMatch && hostBeforePort !== null) {
    const port = Number(portMatch[2]);
    if (port < 1 || port > 65535) refuse('port out of range');
    return { kind: 'host-port', host: hostBeforePort, port };
  }

  const host = normaliseHost(entry);
  if (host === null) return refuse('not a valid host');
  if (isIpLiteral(host) && !isPublicUnicast(host)) {
    refuse('a private or special address is only allowed with an explicit port, e.g. 10.0.0.5:9000');
  }
  return { kind: 'host', host };
}

/** Lets WHATWG URL canonicalise the host (`0x7f.1` → `127.0.0.1`, `[::FFFF:1.2.3.4]` → `[::ffff:102:304]`). */
function normaliseHost(host: string): string | null {
  if (host === '' || host.includes(':') !== host.startsWith('[')) return null;
  try {
    const url = new URL(`http://${host}/`);
    return url.port === '' ? url.hostname : null;
  } catch {
    return null;
  }
}

export function checkRecordingUrl(raw: string, allowlist: readonly AllowlistEntry[]): CheckedUrl {
  const refuse = (why: string): never => {
    throw new AppError(`Recording URL refused: ${why}`, { code: 'URL_REFUSED', statusCode: 400, retryable: false });
  };
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return refuse('not a valid absolute URL');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') refuse(`scheme ${url.protocol} is not http or https`);
  if (url.username !== '' || url.password !== '') refuse('credentials in the URL');

  const host = url.hostname;
  const port = url.port === '' ? (url.protocol === 'https:' ? 443 : 80) : Number(url.port);
  const literal = isIpLiteral(host);
  const exact = allowlist.some((e) => e.kind === 'host-port' && e.host === host && e.port === port);
  const listed =
    exact ||
    allowlist.some(
      (e) =>
        (e.kind === 'host' && e.host === host) ||
        (e.kind === 'subdomains' && !literal && host.endsWith(e.suffix) && host.length > e.suffix.length),
    );
  if (!listed) refuse(`host ${url.host} is not in the allow-list`);
  if (literal && !exact && !isPublicUnicast(host)) {
    refuse(`${host} is not a public address (allow-list its exact host:port to permit it)`);
  }
  return { url, allowPrivate: exact };
}

function isIpLiteral(host: string): boolean {
  return ipaddr.isValid(stripBrackets(host));
}

function stripBrackets(host: string): string {
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
}

const IPV6_GLOBAL_UNICAST = ipaddr.IPv6.parseCIDR('2000::/3');

/**
 * Only ipaddr.js's plain `unicast` counts as public: every named range (loopback, private,
 * link-local, CGNAT, NAT64, 6to4, Teredo, reserved…) either is internal or can tunnel to an
 * internal address.
 */
export function isPublicUnicast(address: string): boolean {
  let parsed: ipaddr.IPv4 | ipaddr.IPv6;
  try {
    parsed = ipaddr.parse(stripBrackets(address));
  } catch {
    return false;
  }
  if (parsed.kind() === 'ipv6' && (parsed as ipaddr.IPv6).isIPv4MappedAddress()) {
    parsed = (parsed as ipaddr.IPv6).toIPv4Address();
  }
  // Public IPv6 addresses are only ever assigned from 2000::/3; ipaddr.js calls the rest of the
  // space `unicast` too, the deprecated IPv4-compatible `::127.0.0.1` (`::7f00:1`) among it.
  if (parsed.kind() === 'ipv6' && !parsed.match(IPV6_GLOBAL_UNICAST)) return false;
  return parsed.range() === 'unicast';
}

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;

/**
 * For undici's `connect.lookup`: resolves like `dns.lookup` but fails the connection when any
 * address of the name is not public, so `evil.example` pointing at 127.0.0.1 is not fetched.
 * Checking every address (not just the one used) keeps a later happy-eyeballs attempt safe too.
 */
export function lookupPublicAddress(hostname: string, options: LookupOptions, callback: LookupCallback): void {
  dns.lookup(hostname, { ...options, all: true }, (err, addresses) => {
    if (err) return callback(err, []);
    const refused = addresses.find((a) => !isPublicUnicast(a.address));
    if (refused) {
      const error = new AppError(`Recording URL refused: ${hostname} resolves to ${refused.address}, not a public address`, {
        code: 'URL_REFUSED',
        statusCode: 400,
        retryable: false,
      });
      return callback(error, []);
    }
    if (options.all) return callback(null, addresses);
    const first = addresses[0];
    if (!first) return callback(Object.assign(new Error(`${hostname} has no address`), { code: 'ENOTFOUND' }), []);
    callback(null, first.address, first.family);
  });
}
