import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeWavoipStorage, type FakeWavoipStorage } from '../support/fake-wavoip-storage.ts';
import { API_TOKEN, makeDataDir, startInProcessService, testEnvironment, WEBHOOK_TOKEN, type InProcessService } from '../support/service-harness.ts';

interface Answer {
  status: number;
  retryAfter: string | undefined;
  body: { error?: string };
}

/**
 * A request from a chosen client address: Linux answers on all of 127.0.0.0/8, so a client
 * bound to another loopback address is another client as far as the service can tell.
 */
function send(
  service: InProcessService,
  options: { path: string; method?: 'GET' | 'POST'; from: string; headers?: Record<string, string>; body?: unknown },
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const outgoing = http.request(
      `${service.url}${options.path}`,
      { method: options.method ?? 'GET', localAddress: options.from, agent: false, headers: { 'content-type': 'application/json', ...options.headers } },
      (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () =>
          resolve({
            status: response.statusCode ?? 0,
            retryAfter: response.headers['retry-after'],
            body: JSON.parse(Buffer.concat(chunks).toString('utf8')) as { error?: string },
          }),
        );
      },
    );
    outgoing.on('error', reject);
    outgoing.end(options.body === undefined ? undefined : JSON.stringify(options.body));
  });
}

const webhook = (token: string) => ({
  path: `/webhooks/wavoip?token=${encodeURIComponent(token)}`,
  method: 'POST' as const,
  body: { type: 'CALL', whatsapp_call_id: `LOCKOUT-${token.length}`, status: 'INCOMING_RING' },
});
const api = (token: string) => ({ path: '/api/calls', headers: { authorization: `Bearer ${token}` } });

const LIMIT = 3;
let storage: FakeWavoipStorage;

beforeAll(async () => {
  storage = await startFakeWavoipStorage();
});
afterAll(async () => {
  await storage?.close();
});

describe(`AUTH_FAILURE_LIMIT=${LIMIT}: repeated wrong tokens lock the address out`, () => {
  let service: InProcessService;
  beforeAll(async () => {
    service = await startInProcessService(testEnvironment(storage.origin, await makeDataDir(), { AUTH_FAILURE_LIMIT: String(LIMIT) }));
  });
  afterAll(() => service?.stop());

  it('webhooks: 401 up to the limit, then 429 with Retry-After and a warning; a right token still passes', async () => {
    const device = '127.0.0.2';
    for (let attempt = 1; attempt <= LIMIT; attempt += 1) {
      expect((await send(service, { ...webhook(`wrong-guess-${attempt}`), from: device })).status).toBe(401);
    }
    const locked = await send(service, { ...webhook('wrong-guess-again'), from: device });
    expect(locked.status).toBe(429);
    expect(Number(locked.retryAfter)).toBeGreaterThan(0);
    expect(locked.body.error).toMatch(/too many wrong tokens from your address; try again in \d+s/);
    expect(service.logs().some((line) => line.level === 40 && line.msg === `${LIMIT} wrong webhook tokens from 127.0.0.2 within 60s: refusing its wrong tokens with 429 for 60s`)).toBe(true);

    // WaVoIP sends every device's webhooks from the same addresses: one panel with an old token
    // must not shut out the others.
    expect((await send(service, { ...webhook(WEBHOOK_TOKEN), from: device })).status).toBe(200);
    expect((await send(service, { ...webhook('still-wrong'), from: device })).status).toBe(429);
    // Counted apart from the API.
    expect((await send(service, { ...api(API_TOKEN), from: device })).status).toBe(200);
  });

  it('API: after the limit the address is refused whatever it sends, so guessing cannot go on; webhooks and /healthz stay open', async () => {
    const guesser = '127.0.0.3';
    for (let attempt = 1; attempt <= LIMIT; attempt += 1) {
      expect((await send(service, { ...api(`wrong-api-token-${attempt}`), from: guesser })).status).toBe(401);
    }
    expect((await send(service, { ...api('wrong-api-token-4'), from: guesser })).status).toBe(429);
    // A right guess must not be told apart from a wrong one while locked out.
    expect((await send(service, { ...api(API_TOKEN), from: guesser })).status).toBe(429);
    expect(service.logs().some((line) => line.msg === `${LIMIT} wrong API tokens from 127.0.0.3 within 60s: refusing its wrong tokens with 429 for 60s, and its right ones too`)).toBe(true);
    expect((await send(service, { ...webhook(WEBHOOK_TOKEN), from: guesser })).status).toBe(200);
    expect((await send(service, { path: '/healthz', from: guesser })).status).toBe(200);
  });

  it('leaves other addresses alone: their right tokens work and their first wrong ones get 401', async () => {
    const other = '127.0.0.4';
    expect((await send(service, { ...webhook(WEBHOOK_TOKEN), from: other })).status).toBe(200);
    expect((await send(service, { ...api(API_TOKEN), from: other })).status).toBe(200);
    expect((await send(service, { ...api('one-wrong-token'), from: other })).status).toBe(401);
  });

  it('never counts right tokens: a busy sender is not locked out', async () => {
    const sender = '127.0.0.5';
    for (let delivery = 0; delivery < LIMIT * 5; delivery += 1) {
      expect((await send(service, { ...webhook(WEBHOOK_TOKEN), from: sender })).status).toBe(200);
    }
  });

  it('counts the refusals in the metrics', async () => {
    const metrics = await (await service.api('/metrics')).text();
    expect(metrics).toMatch(/wavoip_recordings_auth_failures_total\{endpoint="webhook",result="unauthorized"\} [1-9]/);
    expect(metrics).toMatch(/wavoip_recordings_auth_failures_total\{endpoint="webhook",result="locked_out"\} [1-9]/);
    expect(metrics).toMatch(/wavoip_recordings_auth_failures_total\{endpoint="api",result="unauthorized"\} [1-9]/);
    expect(metrics).toMatch(/wavoip_recordings_auth_failures_total\{endpoint="api",result="locked_out"\} [1-9]/);
  });
});

describe('TRUST_PROXY: the lock-out counts by the client behind the proxy', () => {
  it('ignores X-Forwarded-For unless the proxy is trusted, so a guesser cannot dodge the count', async () => {
    const service = await startInProcessService(testEnvironment(storage.origin, await makeDataDir(), { AUTH_FAILURE_LIMIT: '2' }));
    try {
      const guesser = '127.0.0.6';
      for (let attempt = 0; attempt < 3; attempt += 1) {
        await send(service, { ...api('wrong'), from: guesser, headers: { authorization: 'Bearer wrong', 'x-forwarded-for': `198.51.100.${attempt}` } });
      }
      const dodge = await send(service, { ...api(API_TOKEN), from: guesser, headers: { authorization: `Bearer ${API_TOKEN}`, 'x-forwarded-for': '198.51.100.99' } });
      expect(dodge.status).toBe(429);
    } finally {
      await service.stop();
    }
  });

  it('with the proxy trusted, locks out the guessing client and not the others behind the same proxy', async () => {
    const service = await startInProcessService(
      testEnvironment(storage.origin, await makeDataDir(), { AUTH_FAILURE_LIMIT: '2', TRUST_PROXY: '127.0.0.7' }),
    );
    try {
      // A client reaching the service directly, not through the named proxy, cannot forge its address.
      const direct = '127.0.0.9';
      for (let attempt = 0; attempt < 3; attempt += 1) {
        await send(service, { ...api('wrong'), from: direct, headers: { authorization: 'Bearer wrong', 'x-forwarded-for': `198.51.100.${attempt + 10}` } });
      }
      expect((await send(service, { ...api(API_TOKEN), from: direct, headers: { authorization: `Bearer ${API_TOKEN}`, 'x-forwarded-for': '198.51.100.99' } })).status).toBe(429);
      const proxy = '127.0.0.7';
      const viaProxy = (client: string, token: string) =>
        send(service, { ...api(token), from: proxy, headers: { authorization: `Bearer ${token}`, 'x-forwarded-for': client } });
      for (let attempt = 0; attempt < 2; attempt += 1) expect((await viaProxy('203.0.113.5', 'wrong')).status).toBe(401);
      expect((await viaProxy('203.0.113.5', 'wrong')).status).toBe(429);
      expect((await viaProxy('203.0.113.5', API_TOKEN)).status).toBe(429);
      expect((await viaProxy('198.51.100.7', API_TOKEN)).status).toBe(200);
    } finally {
      await service.stop();
    }
  });

  it('counts an IPv6 client by its /64, so rotating addresses within it does not help', async () => {
    const service = await startInProcessService(
      testEnvironment(storage.origin, await makeDataDir(), { AUTH_FAILURE_LIMIT: '2', TRUST_PROXY: '127.0.0.8' }),
    );
    try {
      const proxy = '127.0.0.8';
      const viaProxy = (client: string, token: string) =>
        send(service, { ...api(token), from: proxy, headers: { authorization: `Bearer ${token}`, 'x-forwarded-for': client } });
      expect((await viaProxy('2001:db8:1:2::1', 'wrong')).status).toBe(401);
      expect((await viaProxy('2001:db8:1:2::2', 'wrong')).status).toBe(401);
      expect((await viaProxy('2001:db8:1:2:aaaa::3', 'wrong')).status).toBe(429);
      expect((await viaProxy('2001:db8:1:2:ffff::4', API_TOKEN)).status).toBe(429);
      expect((await viaProxy('2001:db8:1:3::1', API_TOKEN)).status).toBe(200);
    } finally {
      await service.stop();
    }
  });
});
