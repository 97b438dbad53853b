import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Clock } from '../../src/clock.ts';
import { startFakeWavoipStorage, type FakeWavoipStorage } from '../support/fake-wavoip-storage.ts';
import { API_TOKEN, NO_POLLING, makeDataDir, startInProcessService, testEnvironment, waitFor, type InProcessService } from '../support/service-harness.ts';
import { openTestDatabase } from '../support/test-database.ts';

class MovedClock implements Clock {
  offsetMs = 0;
  now(): number {
    return Date.now() + this.offsetMs;
  }
}

const PASSWORD = 'a dashboard password';
const HOUR_MS = 3_600_000;
const clock = new MovedClock();
let storage: FakeWavoipStorage;
let env: Record<string, string>;
let service: InProcessService;

interface SessionAnswer {
  csrf_token: string;
  expires_at: string;
}

function signIn(target: { url: string }, password: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${target.url}/api/session`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify({ password }) });
}

/** `wavoip_session=<value>` from a sign-in's Set-Cookie, as a browser sends it back. */
function sessionCookie(response: Response): string {
  const cookie = response.headers.getSetCookie().find((line) => line.startsWith('wavoip_session='));
  if (cookie === undefined) throw new Error('no session cookie was set');
  return cookie.split(';')[0] as string;
}

function cookieAttributes(response: Response): string[] {
  const cookie = response.headers.getSetCookie().find((line) => line.startsWith('wavoip_session=')) ?? '';
  return cookie.split(';').slice(1).map((part) => part.trim());
}

async function signedIn(target: { url: string } = service): Promise<{ cookie: string; csrf: string }> {
  const response = await signIn(target, PASSWORD);
  expect(response.status).toBe(200);
  return { cookie: sessionCookie(response), csrf: ((await response.json()) as SessionAnswer).csrf_token };
}

const withCookie = (path: string, cookie: string, init: RequestInit = {}) =>
  fetch(`${service.url}${path}`, { ...init, headers: { cookie, ...(init.headers as Record<string, string>) } });

beforeAll(async () => {
  storage = await startFakeWavoipStorage();
  env = testEnvironment(storage.origin, await makeDataDir(), { ...NO_POLLING, DASHBOARD_PASSWORD: PASSWORD, DASHBOARD_SESSION_TTL: '1h' });
  service = await startInProcessService(env, { clock });
  expect((await service.postWebhook({ type: 'CALL', whatsapp_call_id: 'SESSION-PENDING', status: 'ACTIVE' })).status).toBe(200);
  await waitFor(async () => (await service.api('/api/calls/SESSION-PENDING')).status === 200, 'the call to be stored');
});

afterAll(async () => {
  await service?.stop();
  await storage?.close();
});

describe('signing in to the dashboard', () => {
  it('takes DASHBOARD_PASSWORD or the API token, and sets an HttpOnly SameSite=Strict cookie for the whole site lasting DASHBOARD_SESSION_TTL', async () => {
    for (const password of [PASSWORD, API_TOKEN]) {
      clock.offsetMs = 0;
      const before = clock.now();
      const response = await signIn(service, password);
      expect(response.status).toBe(200);
      expect(response.headers.get('cache-control')).toBe('no-store');
      const body = (await response.json()) as SessionAnswer;
      expect(body.csrf_token).toMatch(/^[A-Za-z0-9_-]{43}$/);
      expect(Date.parse(body.expires_at) - before).toBeGreaterThanOrEqual(HOUR_MS);
      expect(Date.parse(body.expires_at) - before).toBeLessThan(HOUR_MS + 60_000);
      expect(sessionCookie(response)).toMatch(/^wavoip_session=[A-Za-z0-9_-]{43}$/);
      expect(cookieAttributes(response)).toEqual(expect.arrayContaining(['Max-Age=3600', 'Path=/', 'HttpOnly', 'SameSite=Strict']));
      // Plain http, no proxy trusted: a Secure cookie would never come back.
      expect(cookieAttributes(response)).not.toContain('Secure');
    }
  });

  it('answers a wrong password 401 naming the field, and sets no cookie', async () => {
    const response = await signIn(service, 'not the password');
    expect(response.status).toBe(401);
    expect(await response.json()).toEqual({ error: 'wrong password', field: 'password' });
    expect(response.headers.getSetCookie()).toEqual([]);
  });

  it('refuses a body without a password as a 400 naming it', async () => {
    const response = await fetch(`${service.url}/api/session`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ field: 'password' });
  });

  it('keeps only a hash of the cookie in the database', async () => {
    const { cookie } = await signedIn();
    const value = cookie.split('=')[1] as string;
    const database = await openTestDatabase(env);
    try {
      const rows = await database.all<{ id_hash: string }>('select id_hash from dashboard_sessions');
      expect(rows.length).toBeGreaterThan(0);
      expect(rows.every((row) => /^[0-9a-f]{64}$/.test(row.id_hash) && row.id_hash !== value)).toBe(true);
    } finally {
      await database.close();
    }
  });

  it('GET /api/session answers the live session\'s CSRF token, and 401 without a session', async () => {
    clock.offsetMs = 0;
    const { cookie, csrf } = await signedIn();
    const live = await withCookie('/api/session', cookie);
    expect(live.status).toBe(200);
    expect(((await live.json()) as SessionAnswer).csrf_token).toBe(csrf);
    const none = await fetch(`${service.url}/api/session`);
    expect(none.status).toBe(401);
    expect(await none.json()).toEqual({ error: 'not signed in' });
    expect((await withCookie('/api/session', 'wavoip_session=made-up')).status).toBe(401);
  });
});

describe('the session cookie on the API', () => {
  it('reads every /api route with the cookie alone, but not /metrics (bearer only)', async () => {
    clock.offsetMs = 0;
    const { cookie } = await signedIn();
    for (const path of ['/api/calls', '/api/calls/SESSION-PENDING', '/api/devices', '/api/summary', '/api/destinations']) {
      const response = await withCookie(path, cookie);
      expect(response.status, path).toBe(200);
      // No cache, shared or the browser's, keeps call data read with a cookie.
      expect(response.headers.get('cache-control'), path).toBe('private, no-store');
    }
    expect((await withCookie('/metrics', cookie)).status).toBe(401);
    expect((await service.api('/metrics')).status).toBe(200);
  });

  it('refuses a write made with the cookie without the session\'s X-CSRF-Token, or with another one, and takes it with its own', async () => {
    clock.offsetMs = 0;
    const { cookie, csrf } = await signedIn();
    const other = await signedIn();
    const retry = (headers: Record<string, string>) => withCookie('/api/calls/SESSION-PENDING/retry', cookie, { method: 'POST', headers });

    for (const headers of [{}, { 'x-csrf-token': other.csrf }, { 'x-csrf-token': '' }] as Record<string, string>[]) {
      const refused = await retry(headers);
      expect(refused.status).toBe(403);
      expect(await refused.json()).toEqual({ error: 'missing or wrong CSRF token: send X-CSRF-Token', field: 'x-csrf-token' });
    }
    const accepted = await retry({ 'x-csrf-token': csrf });
    expect(accepted.status).toBe(202);
    expect(((await accepted.json()) as { whatsapp_call_id: string }).whatsapp_call_id).toBe('SESSION-PENDING');
  });

  it('still takes the bearer token, without any CSRF header', async () => {
    expect((await service.api('/api/calls')).status).toBe(200);
    expect((await service.api('/api/calls/SESSION-PENDING/retry', { method: 'POST' })).status).toBe(202);
    expect((await service.api('/api/calls', { token: 'wrong-token' })).status).toBe(401);
  });

  it('signing out needs the CSRF token, deletes the session and clears the cookie: the old cookie is refused after', async () => {
    clock.offsetMs = 0;
    const { cookie, csrf } = await signedIn();
    expect((await withCookie('/api/session', cookie, { method: 'DELETE' })).status).toBe(403);
    expect((await withCookie('/api/calls', cookie)).status).toBe(200);

    const signedOut = await withCookie('/api/session', cookie, { method: 'DELETE', headers: { 'x-csrf-token': csrf } });
    expect(signedOut.status).toBe(204);
    expect(signedOut.headers.getSetCookie().find((line) => line.startsWith('wavoip_session=;'))).toMatch(/Expires=Thu, 01 Jan 1970|Max-Age=0/);

    const after = await withCookie('/api/calls', cookie);
    expect(after.status).toBe(401);
    expect(await after.json()).toEqual({ error: 'session expired or signed out; sign in again' });
    expect((await withCookie('/api/session', cookie)).status).toBe(401);
  });

  it('signing in again from a browser with a session ends that session; a dead cookie is cleared by GET /api/session', async () => {
    clock.offsetMs = 0;
    const first = await signedIn();
    const again = await signIn(service, PASSWORD, { cookie: first.cookie });
    expect(again.status).toBe(200);
    const second = sessionCookie(again);
    expect(second).not.toBe(first.cookie);
    expect((await withCookie('/api/calls', second)).status).toBe(200);
    expect((await withCookie('/api/calls', first.cookie)).status).toBe(401);

    const dead = await withCookie('/api/session', first.cookie);
    expect(dead.status).toBe(401);
    expect(dead.headers.getSetCookie().find((line) => line.startsWith('wavoip_session=;'))).toMatch(/Expires=Thu, 01 Jan 1970|Max-Age=0/);
    // Without a cookie there is nothing to clear.
    expect((await fetch(`${service.url}/api/session`)).headers.getSetCookie()).toEqual([]);
  });

  it('a session ends DASHBOARD_SESSION_TTL after sign-in, and the next sign-in prunes it from the database', async () => {
    clock.offsetMs = 0;
    const { cookie } = await signedIn();
    clock.offsetMs = HOUR_MS - 60_000;
    expect((await withCookie('/api/calls', cookie)).status).toBe(200);
    clock.offsetMs = HOUR_MS + 1_000;
    expect((await withCookie('/api/calls', cookie)).status).toBe(401);
    expect((await withCookie('/api/session', cookie)).status).toBe(401);

    const fresh = await signedIn();
    expect((await withCookie('/api/calls', fresh.cookie)).status).toBe(200);
    const database = await openTestDatabase(env);
    try {
      const expired = await database.get<{ n: number }>('select count(*) as n from dashboard_sessions where expires_at <= ?', [clock.now()]);
      expect(Number(expired?.n)).toBe(0);
    } finally {
      await database.close();
      clock.offsetMs = 0;
    }
  });
});

describe('behind a proxy, and the lock-out', () => {
  it('sets Secure when a trusted proxy says the browser came over https, and not on an untrusted client\'s word', async () => {
    const proxied = await startInProcessService(testEnvironment(storage.origin, await makeDataDir(), { ...NO_POLLING, TRUST_PROXY: '127.0.0.1' }));
    try {
      expect(cookieAttributes(await signIn(proxied, API_TOKEN, { 'x-forwarded-proto': 'https' }))).toContain('Secure');
      expect(cookieAttributes(await signIn(proxied, API_TOKEN))).not.toContain('Secure');
    } finally {
      await proxied.stop();
    }
    expect(cookieAttributes(await signIn(service, API_TOKEN, { 'x-forwarded-proto': 'https' }))).not.toContain('Secure');
  });

  it('counts wrong passwords with wrong bearer tokens toward one lock-out: then 429 with Retry-After, even for the right password', async () => {
    const guarded = await startInProcessService(testEnvironment(storage.origin, await makeDataDir(), { ...NO_POLLING, AUTH_FAILURE_LIMIT: '3', DASHBOARD_PASSWORD: PASSWORD }));
    try {
      expect((await guarded.api('/api/calls', { token: 'guess-1' })).status).toBe(401);
      expect((await signIn(guarded, 'guess-2')).status).toBe(401);
      expect((await signIn(guarded, 'guess-3')).status).toBe(401);
      const locked = await signIn(guarded, 'guess-4');
      expect(locked.status).toBe(429);
      expect(Number(locked.headers.get('retry-after'))).toBeGreaterThan(0);
      const right = await signIn(guarded, PASSWORD);
      expect(right.status).toBe(429);
      expect(right.headers.getSetCookie()).toEqual([]);
      expect((await guarded.api('/api/calls')).status).toBe(429);
    } finally {
      await guarded.stop();
    }
  });
});

describe('with DASHBOARD=false', () => {
  it('has no session routes (404), and a session cookie opens nothing', async () => {
    clock.offsetMs = 0;
    const { cookie } = await signedIn();
    const off = await startInProcessService({ ...env, DASHBOARD: 'false', DATA_DIR: await makeDataDir() }, { clock });
    try {
      expect((await signIn(off, API_TOKEN)).status).toBe(404);
      expect((await fetch(`${off.url}/api/session`, { headers: { cookie } })).status).toBe(404);
      // Even a cookie whose session is live in its database (PostgreSQL: the same one): cookies are not read at all.
      const database = await openTestDatabase(env);
      const sessions = await database.all<{ id_hash: string; csrf_token: string; created_at: number; expires_at: number }>('select * from dashboard_sessions');
      await database.close();
      expect(sessions.length).toBeGreaterThan(0);
      const offDatabase = await openTestDatabase({ ...env, DATA_DIR: off.dataDir });
      try {
        for (const row of sessions) {
          await offDatabase.run('insert into dashboard_sessions (id_hash, csrf_token, created_at, expires_at) values (?, ?, ?, ?) on conflict (id_hash) do nothing', [row.id_hash, row.csrf_token, row.created_at, row.expires_at]);
        }
      } finally {
        await offDatabase.close();
      }
      const refused = await fetch(`${off.url}/api/calls`, { headers: { cookie } });
      expect(refused.status).toBe(401);
      expect(((await refused.json()) as { error: string }).error).toMatch(/API token/);
      expect((await off.api('/api/calls')).status).toBe(200);
    } finally {
      await off.stop();
    }
  });
});
