import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadDashboardAssets } from '../../src/dashboard/dashboard-routes.ts';
import { startFakeWavoipStorage, type FakeWavoipStorage } from '../support/fake-wavoip-storage.ts';
import { NO_POLLING, makeDataDir, startInProcessService, testEnvironment, type InProcessService } from '../support/service-harness.ts';

const CSP = "default-src 'none';script-src 'self';style-src 'self';img-src 'self' data:;media-src 'self';connect-src 'self';base-uri 'none';form-action 'self';frame-ancestors 'none'";
const PAGES = ['/', '/calls/ABC-123', '/devices', '/sign-in'];

let storage: FakeWavoipStorage;
let service: InProcessService;

beforeAll(async () => {
  storage = await startFakeWavoipStorage();
  service = await startInProcessService(testEnvironment(storage.origin, await makeDataDir(), NO_POLLING));
});

afterAll(async () => {
  await service?.stop();
  await storage?.close();
});

function expectSecurityHeaders(response: Response) {
  expect(response.headers.get('content-security-policy')).toBe(CSP);
  expect(response.headers.get('x-content-type-options')).toBe('nosniff');
  expect(response.headers.get('referrer-policy')).toBe('no-referrer');
  expect(response.headers.get('x-frame-options')).toBe('DENY');
}

/** The asset paths the shell names, as a browser finds them. */
async function shellAssets(): Promise<string[]> {
  const html = await (await fetch(`${service.url}/`)).text();
  return [...html.matchAll(/(?:src|href)="(\/assets\/[^"]+)"/g)].map((match) => match[1] as string);
}

describe('the dashboard pages', () => {
  it('every page is the shell, without a token, revalidated each time, under the strict CSP', async () => {
    for (const page of PAGES) {
      const response = await fetch(`${service.url}${page}`);
      expect(response.status, page).toBe(200);
      expect(response.headers.get('content-type')).toBe('text/html; charset=utf-8');
      expect(response.headers.get('cache-control')).toBe('no-cache');
      expectSecurityHeaders(response);
      const html = await response.text();
      expect(html).toContain('<main id="main"');
      // Nothing inline for the CSP to block, and no asset from anywhere else.
      expect(html).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>|<style|\sstyle=|https?:\/\//);
    }
  });

  it('assets live under their content hash, cached for a year, with the same headers', async () => {
    const { hash } = loadDashboardAssets();
    const assets = await shellAssets();
    expect(assets).toEqual(expect.arrayContaining([`/assets/${hash}/app.js`, `/assets/${hash}/app.css`]));
    for (const asset of [...assets, `/assets/${hash}/views/calls.js`, `/assets/${hash}/i18n/pt-BR.js`]) {
      const response = await fetch(`${service.url}${asset}`);
      expect(response.status, asset).toBe(200);
      expect(response.headers.get('cache-control')).toBe('public, max-age=31536000, immutable');
      expectSecurityHeaders(response);
      if (asset.endsWith('.js')) expect(response.headers.get('content-type')).toMatch(/^(text|application)\/javascript/);
      if (asset.endsWith('.css')) expect(response.headers.get('content-type')).toMatch(/^text\/css/);
    }
  });

  it('an unknown asset, another version, or the raw shell under /assets is 404', async () => {
    const { hash } = loadDashboardAssets();
    for (const asset of [`/assets/${hash}/nope.js`, `/assets/0000000000000000/app.js`, `/assets/${hash}/index.html`, `/assets/${hash}/..%2fdashboard-routes.ts`, `/assets/${hash}/views/..%2f..%2fdashboard-routes.ts`, `/assets/${hash}/views/..%2findex.html`]) {
      // (A plain "/../" or "%2e%2e" never leaves the client: fetch resolves it. An encoded slash reaches the server.)
      expect((await fetch(`${service.url}${asset}`)).status, asset).toBe(404);
    }
  });

  it('the API stays closed: a page loads without a token, the data behind it does not', async () => {
    expect((await fetch(`${service.url}/api/calls`)).status).toBe(401);
  });

  it('the start-up log says where the dashboard is and how to sign in', () => {
    expect(service.logs().map((line) => line.msg)).toContain(`Dashboard: ${service.url}/ (sign in with the API token)`);
  });
});

describe('DASHBOARD=false', () => {
  it('serves no page and no asset', async () => {
    const off = await startInProcessService(testEnvironment(storage.origin, await makeDataDir(), { ...NO_POLLING, DASHBOARD: 'false' }));
    try {
      const { hash } = loadDashboardAssets();
      for (const path of [...PAGES, `/assets/${hash}/app.js`]) expect((await fetch(`${off.url}${path}`)).status, path).toBe(404);
      expect((await off.api('/api/calls')).status).toBe(200);
      expect(off.logs().some((line) => line.msg.startsWith('Dashboard:'))).toBe(false);
    } finally {
      await off.stop();
    }
  });
});
