/**
 * The dashboard with its server part: sign-in and sign-out (session cookie, CSRF), the live
 * stream (GET /api/live), the health strip and silence banner (GET /api/summary), and search
 * (`q`).
 */
import fs from 'node:fs';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startFakeWavoipStorage, type FakeWavoipStorage } from '../support/fake-wavoip-storage.ts';
import { API_TOKEN, NO_POLLING, makeDataDir, startInProcessService, testEnvironment, waitFor, type InProcessService } from '../support/service-harness.ts';
import { collectPageErrors, dashboardContext, describeInChromium, launchChromium, screenshot } from './support/browser.ts';

const ogg = fs.readFileSync(new URL('../fixtures/audio/call-pt-br-9s.ogg', import.meta.url));

let storage: FakeWavoipStorage;
let service: InProcessService;
let browser: Browser;

beforeAll(async () => {
  storage = await startFakeWavoipStorage();
  service = await startInProcessService(testEnvironment(storage.origin, await makeDataDir(), { ...NO_POLLING, POLL_INITIAL_DELAY: '30m', POLL_MAX_DELAY: '1h' }));
  expect((await service.postWebhook({ type: 'CALL', action: 'CREATE', whatsapp_call_id: 'FIRST', status: 'ENDED', direction: 'INCOMING', caller: '5511911112222', receiver: '5566999050312', id_session: 789, duration: 5 })).status).toBe(200);
  await waitFor(async () => (await service.api('/api/calls/FIRST')).status === 200, 'the first call');
  browser = await launchChromium();
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await service?.stop();
  await storage?.close();
});

async function open(target: InProcessService, path: string) {
  const context = await dashboardContext(browser, target);
  const page = await context.newPage();
  const errors = collectPageErrors(page);
  await page.goto(path);
  return { page, errors, close: () => context.close() };
}

const row = (page: Page, callId: string) => page.locator(`tr[data-call-id="${callId}"]`);

describeInChromium('the dashboard with sessions, the live stream and the summary', () => {
  it('asks for the password, says when it is wrong, and goes back where the user was; sign-out ends the session', async () => {
    const context = await browser.newContext({ baseURL: service.url });
    try {
      const page = await context.newPage();
      await page.goto('/calls/FIRST');
      await page.waitForURL((url) => url.pathname === '/sign-in' && url.searchParams.get('next') === '/calls/FIRST');
      await page.getByLabel('Password').fill('not the password');
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.getByText('Wrong password. Try again.').waitFor();
      await screenshot(page, 'sign-in-wrong');
      await page.getByLabel('Password').fill(API_TOKEN);
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.waitForURL('**/calls/FIRST');
      await page.getByRole('heading', { name: 'Call with +5511911112222' }).waitFor();
      const cookie = (await context.cookies()).find((each) => each.name === 'wavoip_session');
      expect(cookie).toMatchObject({ httpOnly: true, sameSite: 'Strict' });

      await page.getByRole('button', { name: 'Sign out' }).click();
      await page.waitForURL('**/sign-in');
      expect((await context.request.get(`${service.url}/api/session`)).status()).toBe(401);
      await page.goto('/');
      await page.waitForURL((url) => url.pathname === '/sign-in' && url.searchParams.get('next') === '/');
    } finally {
      await context.close();
    }
  });

  it('after signing in goes back only to a page of this site: never to another site, nor to the sign-in page again', async () => {
    const cases = [
      ['/devices?from=link', '/devices?from=link'],
      ['//evil.example/', '/'],
      ['/\\evil.example/', '/'],
      ['/\t/evil.example/', '/'],
      ['https://evil.example/', '/'],
      ['/sign-in?next=/devices', '/'],
    ] as const;
    for (const [next, expected] of cases) {
      const context = await browser.newContext({ baseURL: service.url });
      try {
        const page = await context.newPage();
        await page.goto(`/sign-in?next=${encodeURIComponent(next)}`);
        await page.getByLabel('Password').fill(API_TOKEN);
        await page.getByRole('button', { name: 'Sign in' }).click();
        await page.waitForURL((url) => url.origin === service.url && url.pathname + url.search === expected);
        await page.getByRole('heading', { name: expected.startsWith('/devices') ? 'Devices' : 'Calls', level: 1 }).waitFor();
      } finally {
        await context.close();
      }
    }
  });

  it('says when too many wrong passwords locked the address out (429)', async () => {
    // A service of its own: the lock-out shuts this address out of the API, bearer token and all.
    const lockable = await startInProcessService(testEnvironment(storage.origin, await makeDataDir(), { ...NO_POLLING, AUTH_FAILURE_LIMIT: '3' }));
    const context = await browser.newContext({ baseURL: lockable.url });
    try {
      const page = await context.newPage();
      await page.goto('/sign-in');
      for (let attempt = 0; attempt < 8; attempt++) {
        await page.getByLabel('Password').fill(`wrong ${attempt}`);
        await page.getByRole('button', { name: 'Sign in' }).click();
        await page.locator('#sign-in-error:not(:empty)').waitFor();
        if ((await page.locator('#sign-in-error').textContent())?.startsWith('Too many wrong attempts')) return;
      }
      throw new Error('never locked out');
    } finally {
      await context.close();
      await lockable.stop();
    }
  });

  it('a webhook shows up in the open list without a reload, is announced, and its row changes in place', async () => {
    const { page, errors, close } = await open(service, '/');
    try {
      await row(page, 'FIRST').waitFor();
      expect((await service.postWebhook({ type: 'CALL', action: 'CREATE', whatsapp_call_id: 'LIVE-NEW', status: 'ACTIVE', direction: 'INCOMING', caller: '5521987654321', receiver: '5566999050312', id_session: 789 })).status).toBe(200);
      await row(page, 'LIVE-NEW').waitFor();
      await waitFor(async () => (await page.locator('#announcer').textContent()) === 'New call: +5521987654321', 'the announcement');
      storage.setRoute('/LIVE-NEW', { kind: 'body', body: ogg, contentType: 'audio/ogg' });
      const marker = await row(page, 'FIRST').evaluate((element) => ((element as unknown as { dataset: { marker: string } }).dataset.marker = 'same page'));
      await service.postReady('LIVE-NEW', storage.url('/LIVE-NEW'));
      await row(page, 'LIVE-NEW').locator('.badge:text-is("Recorded")').waitFor();
      expect(await row(page, 'LIVE-NEW').locator('button.play').count()).toBe(1);
      // Never reloaded: what the test left on the page is still there.
      expect(await row(page, 'FIRST').getAttribute('data-marker')).toBe(marker);
      expect(errors).toEqual([]);
    } finally {
      await close();
    }
  });

  it('a call that arrives while the page is still opening its live stream is listed too', async () => {
    const context = await dashboardContext(browser, service);
    try {
      const page = await context.newPage();
      const errors = collectPageErrors(page);
      // The stream opens only once the list is read and a webhook has come in meanwhile.
      let openStream = () => {};
      const held = new Promise<void>((resolve) => (openStream = resolve));
      await page.route('**/api/live', async (route) => {
        await held;
        await route.continue();
      });
      await page.goto('/');
      await row(page, 'FIRST').waitFor();
      expect((await service.postWebhook({ type: 'CALL', action: 'CREATE', whatsapp_call_id: 'BEFORE-STREAM', status: 'ACTIVE', direction: 'INCOMING', caller: '5521987650000', receiver: '5566999050312', id_session: 789 })).status).toBe(200);
      await waitFor(async () => (await service.api('/api/calls/BEFORE-STREAM')).status === 200, 'the call stored');
      expect(await row(page, 'BEFORE-STREAM').count()).toBe(0);
      openStream();
      await row(page, 'BEFORE-STREAM').waitFor();
      expect(errors).toEqual([]);
    } finally {
      await context.close();
    }
  });

  it('the call page after a failed read: "Try again" shows the call', async () => {
    const context = await dashboardContext(browser, service);
    try {
      const page = await context.newPage();
      // No live stream: only the button may read the call again.
      await page.route('**/api/live', (route) => route.abort());
      let failing = true;
      await page.route('**/api/calls/FIRST', (route) => (failing ? route.abort('connectionreset') : route.continue()));
      await page.goto('/calls/FIRST');
      const tryAgain = page.getByRole('button', { name: 'Try again' });
      await tryAgain.waitFor();
      failing = false;
      await tryAgain.click();
      await page.getByRole('heading', { name: 'Call with +5511911112222', level: 1 }).waitFor();
      await page.locator('section[aria-labelledby="timeline-title"] .timeline li').first().waitFor();
      expect(await page.getByRole('button', { name: 'Try again' }).count()).toBe(0);
    } finally {
      await context.close();
    }
  });

  it('"Fetch now" (with the CSRF token) makes the call page show the recording once fetched', async () => {
    storage.setRoute('/LIVE-PENDING', { kind: 'status', status: 503 });
    await service.postReady('LIVE-PENDING', storage.url('/LIVE-PENDING'));
    await waitFor(async () => ((await service.call('LIVE-PENDING')).attachment.attempts ?? 0) >= 1, 'a first failed attempt');
    const { page, errors, close } = await open(service, '/calls/LIVE-PENDING');
    try {
      storage.setRoute('/LIVE-PENDING', { kind: 'body', body: ogg, contentType: 'audio/ogg' });
      const retry = page.waitForRequest((request) => request.url().endsWith('/api/calls/LIVE-PENDING/retry'));
      await page.getByRole('button', { name: 'Fetch now' }).click();
      expect((await retry).headers()['x-csrf-token']).toMatch(/.{16,}/);
      await page.locator('section[aria-labelledby="service-title"] .badge:text-is("Recorded")').waitFor();
      await page.locator('.panel audio').waitFor();
      expect(errors).toEqual([]);
    } finally {
      await close();
    }
  });

  it('the health strip counts calls by state and says the service is ready', async () => {
    const { page, errors, close } = await open(service, '/devices');
    try {
      const strip = page.getByRole('region', { name: 'Service health' });
      await strip.getByText('Ready').waitFor();
      expect(await strip.locator('[data-state="attached"] strong').textContent()).toMatch(/^[1-9]\d*$/);
      expect(await strip.innerText()).toContain('Downloads waiting');
      expect(errors).toEqual([]);
    } finally {
      await close();
    }
  });

  it('a banner on every page when no webhook arrived for WEBHOOK_SILENCE_WARNING', async () => {
    const quiet = await startInProcessService(testEnvironment(storage.origin, await makeDataDir(), { ...NO_POLLING, WEBHOOK_SILENCE_WARNING: '1s' }));
    try {
      await waitFor(async () => ((await (await quiet.api('/api/summary')).json()) as { webhooks: { silent: boolean } }).webhooks.silent, 'the silence');
      const { page, errors, close } = await open(quiet, '/');
      try {
        for (const path of ['/', '/devices']) {
          await page.goto(path);
          await page.getByText('No webhook has arrived yet.').waitFor();
        }
        await screenshot(page, 'devices-silent-banner');
        expect(errors).toEqual([]);
      } finally {
        await close();
      }
    } finally {
      await quiet.stop();
    }
  });

  it('the silence banner names when the last webhook came, and is not read out again on every refresh', async () => {
    const quiet = await startInProcessService(testEnvironment(storage.origin, await makeDataDir(), { ...NO_POLLING, WEBHOOK_SILENCE_WARNING: '1s' }));
    try {
      expect((await quiet.postWebhook({ type: 'CALL', action: 'CREATE', whatsapp_call_id: 'QUIET', status: 'ACTIVE', id_session: 789 })).status).toBe(200);
      await waitFor(async () => ((await (await quiet.api('/api/summary')).json()) as { webhooks: { silent: boolean } }).webhooks.silent, 'the silence');
      const { page, errors, close } = await open(quiet, '/');
      try {
        const banner = page.getByRole('alert').filter({ hasText: 'No webhook has arrived since' });
        await banner.waitFor();
        const { last_received_at: last } = ((await (await quiet.api('/api/summary')).json()) as { webhooks: { last_received_at: string } }).webhooks;
        const absolute = await page.evaluate(`new Intl.DateTimeFormat('en', { dateStyle: 'medium', timeStyle: 'medium' }).format(new Date(${JSON.stringify(last)}))`);
        expect(await banner.textContent()).toContain(`since ${absolute}.`);
        // An alert is read out whenever its text is touched: a refresh with nothing new leaves it be.
        await page.evaluate(`window.bannerChanges = 0; new MutationObserver((records) => (window.bannerChanges += records.length)).observe(document.getElementById('banner'), { childList: true, characterData: true, subtree: true })`);
        const refreshed = page.waitForResponse((response) => response.url().endsWith('/api/summary'));
        // A change that is no webhook: the page refreshes its health strip.
        expect((await quiet.api('/api/calls/QUIET/retry', { method: 'POST' })).status).toBe(202);
        await refreshed;
        await page.getByRole('region', { name: 'Service health' }).getByText('Ready').waitFor();
        await page.evaluate('new Promise((resolve) => setTimeout(resolve, 100))');
        expect(await page.evaluate('window.bannerChanges')).toBe(0);
        expect(errors).toEqual([]);
      } finally {
        await close();
      }
    } finally {
      await quiet.stop();
    }
  });

  it('searches by phone number and by call id', async () => {
    // A call of its own, with a number no other test uses.
    expect((await service.postWebhook({ type: 'CALL', action: 'CREATE', whatsapp_call_id: 'SEARCHED', status: 'ENDED', direction: 'INCOMING', caller: '5531977776666', receiver: '5566999050312', id_session: 789, duration: 3 })).status).toBe(200);
    await waitFor(async () => (await service.api('/api/calls/SEARCHED')).status === 200, 'the searched call');
    const { page, errors, close } = await open(service, '/');
    try {
      await row(page, 'FIRST').waitFor();
      await page.getByRole('searchbox', { name: 'Search' }).fill('+5531977776666');
      await page.getByRole('button', { name: 'Apply' }).click();
      await waitFor(async () => (await page.locator('tbody tr').count()) === 1 && (await row(page, 'SEARCHED').count()) === 1, 'the call with that number');
      expect(new URL(page.url()).searchParams.get('q')).toBe('+5531977776666');
      await page.getByRole('searchbox', { name: 'Search' }).fill('FIR');
      await page.getByRole('button', { name: 'Apply' }).click();
      await waitFor(async () => (await page.locator('tbody tr').count()) === 1 && (await row(page, 'FIRST').count()) === 1, 'the call with that id');
      expect(errors).toEqual([]);
    } finally {
      await close();
    }
  });
});
