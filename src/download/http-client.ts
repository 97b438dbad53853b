import { Agent } from 'undici';
import type { Dispatcher } from 'undici';
import { lookupPublicAddress } from './url-guard.ts';

export interface HttpClientTimeouts {
  connectTimeoutMs: number;
  /** Until the response headers arrive. */
  headersTimeoutMs: number;
  /** Longest silence between two body chunks; a 90-minute recording may take long overall. */
  bodyTimeoutMs: number;
}

const DEFAULT_HTTP_TIMEOUTS: Readonly<HttpClientTimeouts> = Object.freeze({
  connectTimeoutMs: 10_000,
  headersTimeoutMs: 30_000,
  bodyTimeoutMs: 30_000,
});

interface HttpRequestOptions {
  signal: AbortSignal;
  /** From checkRecordingUrl: the exact host:port is allow-listed, so private addresses are fine. */
  allowPrivate: boolean;
}

interface OutboundRequest {
  method: 'POST' | 'GET' | 'PUT' | 'PATCH' | 'DELETE';
  headers: Record<string, string>;
  body?: string | Buffer | NodeJS.ReadableStream;
  signal: AbortSignal;
}

export interface HttpClient {
  /** One GET, redirects not followed: the caller re-checks every hop against the allow-list. */
  request(url: URL, options: HttpRequestOptions): Promise<Dispatcher.ResponseData>;
  /**
   * One request to a destination the operator configured (an outbound webhook, Chatwoot): no
   * allow-list or address check (those guard URLs that come from webhooks), the same timeouts.
   */
  send(url: URL, options: OutboundRequest): Promise<Dispatcher.ResponseData>;
  close(): Promise<void>;
}

export function createHttpClient(timeouts: Partial<HttpClientTimeouts> = {}): HttpClient {
  const { connectTimeoutMs, headersTimeoutMs, bodyTimeoutMs } = { ...DEFAULT_HTTP_TIMEOUTS, ...timeouts };
  const createAgent = (guardDns: boolean): Agent =>
    new Agent({
      connect: guardDns ? { timeout: connectTimeoutMs, lookup: lookupPublicAddress } : { timeout: connectTimeoutMs },
      headersTimeout: headersTimeoutMs,
      bodyTimeout: bodyTimeoutMs,
    });
  const publicOnly = createAgent(true);
  const privateAllowed = createAgent(false);
  let closing: Promise<void> | undefined;

  return {
    request(url, { signal, allowPrivate }) {
      const agent = allowPrivate ? privateAllowed : publicOnly;
      return agent.request({
        origin: url.origin,
        path: `${url.pathname}${url.search}`,
        method: 'GET',
        // No Accept-Encoding: the stored bytes and their sha256 must be the file itself.
        headers: { 'user-agent': 'wavoip-recordings', accept: 'audio/*, */*;q=0.1' },
        signal,
      });
    },
    send(url, { method, headers, body, signal }) {
      return privateAllowed.request({
        origin: url.origin,
        path: `${url.pathname}${url.search}`,
        method,
        headers: { 'user-agent': 'wavoip-recordings', ...headers },
        body: body as Dispatcher.DispatchOptions['body'],
        signal,
      });
    },
    close() {
      closing ??= Promise.all([publicOnly.close(), privateAllowed.close()]).then(() => undefined);
      return closing;
    },
  };
}
