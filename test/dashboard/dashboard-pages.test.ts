import fs from 'node:fs';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startFakeWavoipStorage, type FakeWavoipStorage } from '../support/fake-wavoip-storage.ts';
import { NO_POLLING, makeDataDir, startInProcessService, testEnvironment, waitFor, type InProcessService } from '../support/service-harness.ts';
import { waitForEventsApplied } from '../support/test-database.ts';
import {
  collectPageErrors,
  dashboardContext,
  describeInChromium,
  launchChromium,
  recordRequests,
  screenshot,
  scrollsSideways,
  seriousAccessibilityViolations,
  type MediaElement,
} from './support/browser.ts';
import { sha256 } from '../support/sha256.ts';

const ogg = fs.readFileSync(new URL('../fixtures/audio/call-pt-br-9s.ogg', import.meta.url));
const HOSTILE_NAME = '<img src=x onerror="window.pwned=1"><script>window.pwned=2</script>';
const DEVICE = { type: 'DEVICE', action: 'UPDATE', id_session: 789, phone: '5566999050312', status: 'open' };

let storage: FakeWavoipStorage;
let service: InProcessService;
let env: Record<string, string>;
let browser: Browser;
let recordingRequests: ReturnType<typeof recordRequests>;

async function post(event: Record<string, unknown>) {
  expect((await service.postWebhook(event)).status).toBe(200);
  await waitForEventsApplied(env);
}

/** A call through its events, its first-seen time after the previous call's (the list is newest first). */
async function call(callId: string, ...events: Record<string, unknown>[]) {
  const previous = Date.now();
  await waitFor(() => Date.now() > previous + 5, 'the clock to move');
  for (const event of events) await post({ whatsapp_call_id: callId, id_session: 789, ...event });
}

beforeAll(async () => {
  storage = await startFakeWavoipStorage();
  const dataDir = await makeDataDir();
  // First a service that gives up within a second: a recording that never appears fails.
  env = testEnvironment(storage.origin, dataDir, { POLL_MAX_WAIT: '1s', POLL_INITIAL_DELAY: '100ms', POLL_MAX_DELAY: '200ms' });
  service = await startInProcessService(env);
  await post(DEVICE);
  await call('OUT-MISSED', { type: 'CALL', action: 'CREATE', status: 'NOT_ANSWERED', direction: 'OUTCOMING', caller: '5566999050312', receiver: '5521987654321', duration: 0 });
  await call('FAILED-ONE', { type: 'CALL', action: 'CREATE', status: 'ENDED', direction: 'INCOMING', caller: '5531999990000', receiver: '5566999050312', duration: 12 });
  storage.setRoute('/FAILED-ONE', { kind: 'status', status: 404 });
  await service.postReady('FAILED-ONE', storage.url('/FAILED-ONE'));
  await service.waitForAttachment('FAILED-ONE', 'failed');
  await waitFor(async () => (await service.call('OUT-MISSED')).attachment.state !== 'pending', 'the missed call to settle');
  await service.stop();

  // Then, on the same data, one that tries a failed download again only half an hour later:
  // what the page shows stays put.
  env = testEnvironment(storage.origin, dataDir, { ...NO_POLLING, POLL_INITIAL_DELAY: '30m', POLL_MAX_DELAY: '1h' });
  service = await startInProcessService(env);
  recordingRequests = recordRequests(service.service.app.server, '/api/calls/IN-ANSWERED/recording');
  await post(DEVICE);

  await call('PENDING-ONE', { type: 'CALL', action: 'CREATE', status: 'ENDED', direction: 'INCOMING', caller: '5541988887777', receiver: '5566999050312', duration: 20 });
  storage.setRoute('/PENDING-ONE', { kind: 'status', status: 503 });
  await service.postReady('PENDING-ONE', storage.url('/PENDING-ONE'));
  await waitFor(async () => ((await service.call('PENDING-ONE')).attachment.attempts ?? 0) >= 1, 'a first failed attempt');

  await call('HOSTILE', { type: 'HUMANIZED', action: 'CREATE', status: 'ACTIVE', direction: 'OUTGOING', peer: { phone: '5551977776666', display_name: HOSTILE_NAME } });

  await call(
    'IN-ANSWERED',
    { type: 'CALL', action: 'CREATE', status: 'ACTIVE', direction: 'INCOMING', caller: '5511911112222', receiver: '5566999050312', peer: { display_name: 'Maria Souza' } },
    { type: 'CALL', action: 'UPDATE', status: 'ENDED', duration: 9 },
  );
  storage.setRoute('/IN-ANSWERED', { kind: 'body', body: ogg, contentType: 'audio/ogg' });
  await service.postReady('IN-ANSWERED', storage.url('/IN-ANSWERED'));
  await service.waitForAttachment('IN-ANSWERED', 'attached');

  browser = await launchChromium();
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await service?.stop();
  await storage?.close();
});

/** A page of the dashboard, signed in, with its errors collected. */
async function open(path: string, options: Parameters<typeof dashboardContext>[2] = {}) {
  const context = await dashboardContext(browser, service, options);
  const page = await context.newPage();
  const errors = collectPageErrors(page);
  await page.goto(path);
  return { page, errors, close: () => context.close() };
}

const row = (page: Page, callId: string) => page.locator(`tr[data-call-id="${callId}"]`);
const listedIds = (page: Page) => page.locator('tbody tr').evaluateAll((rows) => rows.map((each) => (each as unknown as { dataset: { callId: string } }).dataset.callId));

describeInChromium('the dashboard in Chromium', () => {
  it('lists the calls newest first: time, direction, number and name, duration, outcome, recording state, play button', async () => {
    const { page, errors, close } = await open('/');
    try {
      await row(page, 'IN-ANSWERED').waitFor();
      expect(await listedIds(page)).toEqual(['IN-ANSWERED', 'HOSTILE', 'PENDING-ONE', 'FAILED-ONE', 'OUT-MISSED']);
      const answered = row(page, 'IN-ANSWERED');
      const started = (await service.call('IN-ANSWERED')).started_at;
      expect(await answered.locator('time').getAttribute('datetime')).toBe(started);
      // Absolute in the browser's zone, as Intl writes it; relative next to it.
      const absolute = await page.evaluate(`new Intl.DateTimeFormat('en-US', { dateStyle: 'medium', timeStyle: 'medium' }).format(new Date(${JSON.stringify(started)}))`);
      expect(await answered.locator('.time .abs').textContent()).toBe(absolute);
      expect(await answered.locator('.time .rel').textContent()).toMatch(/now|seconds? ago|minutes? ago/);
      expect(await answered.locator('td.direction').innerText()).toContain('Incoming');
      expect(await answered.locator('a.peer').textContent()).toBe('+5511911112222');
      expect(await answered.locator('a.peer').getAttribute('href')).toBe('/calls/IN-ANSWERED');
      expect(await answered.locator('.name').textContent()).toBe('Maria Souza');
      expect(await answered.locator('td.duration').textContent()).toBe('0:09');
      expect(await answered.locator('td.outcome').textContent()).toBe('Answered');
      expect(await answered.locator('.badge').textContent()).toBe('Recorded');
      expect(await answered.getByRole('button', { name: 'Play the recording of the call with +5511911112222' }).count()).toBe(1);
      expect(await row(page, 'OUT-MISSED').locator('td.direction').innerText()).toContain('Outgoing');
      expect(await row(page, 'OUT-MISSED').locator('td.outcome').textContent()).toBe('Missed');
      expect(await row(page, 'FAILED-ONE').locator('.badge').textContent()).toBe('Failed');
      expect(await row(page, 'PENDING-ONE').locator('.badge').textContent()).toBe('Pending');
      // No recording, no play button.
      expect(await row(page, 'FAILED-ONE').locator('button.play').count()).toBe(0);
      expect(errors).toEqual([]);
    } finally {
      await close();
    }
  });

  it('shows a hostile name as text: nothing in it runs', async () => {
    const { page, errors, close } = await open('/');
    try {
      await row(page, 'HOSTILE').waitFor();
      expect(await row(page, 'HOSTILE').locator('.name').textContent()).toBe(HOSTILE_NAME);
      expect(await row(page, 'HOSTILE').locator('img, script').count()).toBe(0);
      await page.goto('/calls/HOSTILE');
      await page.locator('.timeline details').first().waitFor();
      expect(await page.locator('.call-head .name').textContent()).toBe(HOSTILE_NAME);
      await page.locator('.timeline summary').first().click();
      expect(await page.locator('.timeline pre').first().textContent()).toContain(JSON.stringify(HOSTILE_NAME).slice(1, -1));
      expect(await page.locator('main img, main script').count()).toBe(0);
      expect(await page.evaluate('window.pwned')).toBeUndefined();
      expect(errors).toEqual([]);
    } finally {
      await close();
    }
  });

  it('plays a recording from the list: it has a duration, and time advances', async () => {
    const { page, errors, close } = await open('/');
    try {
      await row(page, 'IN-ANSWERED').getByRole('button', { name: /^Play the recording/ }).click();
      const audio = row(page, 'IN-ANSWERED').locator('audio');
      await waitFor(async () => (await audio.evaluate((element) => (element as unknown as MediaElement).currentTime)) > 0.5, 'the recording to play');
      const duration = await audio.evaluate((element) => (element as unknown as MediaElement).duration);
      expect(duration).toBeGreaterThan(8);
      expect(duration).toBeLessThan(10);
      expect(await row(page, 'IN-ANSWERED').locator('button.play').getAttribute('aria-pressed')).toBe('true');
      expect(errors).toEqual([]);
    } finally {
      await close();
    }
  });

  it('the call page: the player seeks (a Range request), the download link, the facts, the events', async () => {
    const { page, errors, close } = await open('/calls/IN-ANSWERED');
    try {
      const audio = page.locator('.panel audio');
      await audio.waitFor();
      expect(await audio.getAttribute('preload')).toBe('metadata');
      await waitFor(async () => Number.isFinite(await audio.evaluate((element) => (element as unknown as MediaElement).duration)), 'the recording metadata');
      await audio.evaluate((element) => {
        const media = element as unknown as MediaElement;
        media.currentTime = 6;
        return media.play();
      });
      await waitFor(async () => (await audio.evaluate((element) => (element as unknown as MediaElement).currentTime)) > 6.2, 'playing from 6 s');
      expect(await audio.evaluate((element) => (element as unknown as MediaElement).currentTime)).toBeLessThan(9.5);
      const ranged = recordingRequests.filter((request) => request.range !== undefined);
      expect(ranged.length).toBeGreaterThan(0);
      expect(ranged.map((request) => request.status())).toContain(206);

      expect(await page.getByRole('link', { name: /Download/ }).getAttribute('href')).toBe('/api/calls/IN-ANSWERED/recording?download=1');
      const facts = await page.locator('.panel').first().innerText();
      expect(facts).toContain(sha256(ogg));
      expect(facts).toMatch(/Size\s+24\.2 kB/);
      expect(facts).toMatch(/Codec\s+\S+/);
      expect(facts).toMatch(/Container\s+\S+/);
      const events = page.locator('.timeline li');
      expect(await events.count()).toBe(3);
      await events.first().locator('summary').click();
      expect(JSON.parse((await events.first().locator('pre').textContent()) ?? '')).toMatchObject({ whatsapp_call_id: 'IN-ANSWERED', status: 'ACTIVE' });
      expect(errors).toEqual([]);
    } finally {
      await close();
    }
  });

  it('filters by state, direction and dates, in the URL: shareable, and the back button returns', async () => {
    const { page, errors, close } = await open('/');
    try {
      await row(page, 'IN-ANSWERED').waitFor();
      const apply = async (choices: Record<string, string>) => {
        for (const [name, value] of Object.entries(choices)) {
          const field = page.locator(`form.filters [name="${name}"]`);
          if ((await field.evaluate((element) => (element as unknown as { tagName: string }).tagName)) === 'SELECT') await field.selectOption(value);
          else await field.fill(value);
        }
        await page.getByRole('button', { name: 'Apply' }).click();
      };
      await apply({ state: 'failed' });
      await waitFor(async () => JSON.stringify(await listedIds(page)) === '["FAILED-ONE"]', 'only the failed call');
      expect(new URL(page.url()).search).toBe('?state=failed');

      await apply({ state: '', direction: 'outgoing' });
      await waitFor(async () => JSON.stringify(await listedIds(page)) === '["HOSTILE","OUT-MISSED"]', 'only the outgoing calls');
      expect(new URL(page.url()).search).toBe('?direction=outgoing');

      const today = (await page.evaluate('new Date().toLocaleDateString("en-CA")')) as string;
      const tomorrow = (await page.evaluate('new Date(Date.now() + 86400000).toLocaleDateString("en-CA")')) as string;
      await apply({ direction: '', since: today, until: today });
      await waitFor(async () => (await listedIds(page)).length === 5, 'every call of today');
      await apply({ since: tomorrow, until: '' });
      await page.getByText('No calls match.').waitFor();
      expect(new URL(page.url()).searchParams.get('since')).toBe(tomorrow);

      await page.goBack();
      await waitFor(async () => (await listedIds(page)).length === 5, 'the previous filter back');
      expect(await page.locator('form.filters [name="since"]').inputValue()).toBe(today);
      await page.goBack();
      await waitFor(async () => JSON.stringify(await listedIds(page)) === '["HOSTILE","OUT-MISSED"]', 'the direction filter back');
      expect(await page.locator('form.filters [name="direction"]').inputValue()).toBe('outgoing');

      // A shared link opens the same list.
      await page.goto('/?state=pending&direction=incoming');
      await waitFor(async () => JSON.stringify(await listedIds(page)) === '["PENDING-ONE"]', 'the shared list');
      expect(await page.locator('form.filters [name="state"]').inputValue()).toBe('pending');
      expect(await page.locator('form.filters [name="direction"]').inputValue()).toBe('incoming');
      expect(errors).toEqual([]);
    } finally {
      await close();
    }
  });

  it('the devices page: status, phone, last webhook, calls in the last day, webhooks arriving', async () => {
    const { page, errors, close } = await open('/devices');
    try {
      const device = page.locator('tr[data-device="789"]');
      await device.waitFor();
      expect(await device.locator('td.phone').textContent()).toBe('+5566999050312');
      expect(await device.locator('td.status').textContent()).toBe('Connected');
      expect(await device.locator('td.lastWebhook').textContent()).toMatch(/now|seconds? ago|minutes? ago/);
      expect(await device.locator('td.calls').textContent()).toBe('5');
      expect(await device.locator('td.silent').textContent()).toBe('Arriving');
      expect(errors).toEqual([]);
    } finally {
      await close();
    }
  });

  it('a device silent for longer than WEBHOOK_SILENCE_WARNING is flagged', async () => {
    const quiet = await startInProcessService(testEnvironment(storage.origin, await makeDataDir(), { ...NO_POLLING, WEBHOOK_SILENCE_WARNING: '1s' }));
    const context = await dashboardContext(browser, quiet);
    try {
      expect((await quiet.postWebhook({ ...DEVICE, id_session: 4242 })).status).toBe(200);
      await waitFor(async () => ((await (await quiet.api('/api/devices')).json()) as { devices: { silent: boolean }[] }).devices[0]?.silent === true, 'the device to fall silent');
      const page = await context.newPage();
      const errors = collectPageErrors(page);
      await page.goto('/devices');
      await page.locator('tr[data-device="4242"] td.silent .badge.silent').waitFor();
      expect(await page.locator('tr[data-device="4242"] td.silent').textContent()).toBe('⚠ Silent');
      expect(errors).toEqual([]);
    } finally {
      await context.close();
      await quiet.stop();
    }
  });

  it('speaks Portuguese to a browser that prefers it, and the switch is remembered', async () => {
    const { page, errors, close } = await open('/', { locale: 'pt-BR' });
    try {
      await page.getByRole('heading', { name: 'Chamadas', level: 1 }).waitFor();
      expect(await page.evaluate('document.documentElement.lang')).toBe('pt-BR');
      await row(page, 'IN-ANSWERED').waitFor();
      expect(await row(page, 'IN-ANSWERED').locator('td.direction').innerText()).toContain('Recebida');
      expect(await row(page, 'IN-ANSWERED').locator('.badge').textContent()).toBe('Gravada');
      expect(await page.getByRole('link', { name: 'Dispositivos' }).count()).toBe(1);
      await screenshot(page, 'calls-pt-BR');
      // What went wrong, in Portuguese too; the service's own (English) words only for what the page has no text for.
      const explained = await page.evaluate(`import(document.querySelector('script[type=module]').src.replace(/app\\.js$/, 'views/common.js'))
        .then((common) => [503, 409, 404, 403, 429].map((status) => common.explainError({ status })).concat(common.explainError({ status: 400, message: 'since must be a date' }), common.explainError(new TypeError('Failed to fetch'))))`);
      expect(explained).toEqual([
        'O serviço teve um problema. Tente de novo daqui a pouco.',
        'O estado mudou nesse meio-tempo; a página mostra como está agora.',
        'Não encontrado.',
        'Esta página ficou desatualizada para a sua sessão. Recarregue a página.',
        'Muitas solicitações. Tente de novo em instantes.',
        'since must be a date',
        'Não foi possível falar com o serviço. Verifique a conexão e tente de novo.',
      ]);

      await page.getByLabel('Idioma').selectOption('en');
      await page.getByRole('heading', { name: 'Calls', level: 1 }).waitFor();
      expect(await page.evaluate('document.documentElement.lang')).toBe('en');
      await page.reload();
      await page.getByRole('heading', { name: 'Calls', level: 1 }).waitFor();
      expect(await page.evaluate('document.documentElement.lang')).toBe('en');
      expect(errors).toEqual([]);
    } finally {
      await close();
    }
  });

  for (const [name, path, ready] of [
    ['calls', '/', 'tr[data-call-id="IN-ANSWERED"]'],
    ['call', '/calls/IN-ANSWERED', '.timeline li'],
    ['devices', '/devices', 'tr[data-device="789"]'],
    ['sign-in', '/sign-in', 'input[type="password"]'],
  ] as const) {
    it(`the ${name} page: no serious accessibility violation (axe-core), and no sideways scroll at 375 px`, async () => {
      for (const [suffix, viewport] of [['', { width: 1280, height: 900 }], ['-phone', { width: 375, height: 800 }]] as const) {
        const { page, errors, close } = await open(path, { viewport });
        try {
          await page.locator(ready).first().waitFor();
          expect(await seriousAccessibilityViolations(page)).toEqual([]);
          expect(await scrollsSideways(page)).toBe(false);
          await screenshot(page, `${name}${suffix}`);
          expect(errors).toEqual([]);
        } finally {
          await close();
        }
      }
    });
  }

  it('works from the keyboard: skip link, tab to a play button and to a call link, and activate them', async () => {
    const { page, errors, close } = await open('/');
    try {
      await row(page, 'IN-ANSWERED').waitFor();
      await page.keyboard.press('Tab');
      expect(await page.evaluate('document.activeElement.textContent')).toBe('Skip to content');
      const tabTo = async (test: string, what: string) => {
        for (let presses = 0; presses < 80; presses++) {
          await page.keyboard.press('Tab');
          if (await page.evaluate(test)) return;
        }
        throw new Error(`never reached ${what} with Tab`);
      };
      await tabTo(`document.activeElement.matches('tr[data-call-id="IN-ANSWERED"] button.play')`, 'the play button');
      // Visible focus: the focused button draws an outline.
      expect(await page.evaluate(`getComputedStyle(document.activeElement).outlineStyle`)).toBe('solid');
      await page.keyboard.press('Enter');
      const audio = row(page, 'IN-ANSWERED').locator('audio');
      await waitFor(async () => (await audio.evaluate((element) => (element as unknown as MediaElement).currentTime)) > 0.2, 'the recording to play');

      await page.goto('/');
      await row(page, 'FAILED-ONE').waitFor();
      await tabTo(`document.activeElement.matches('tr[data-call-id="FAILED-ONE"] a.peer')`, 'the call link');
      await page.keyboard.press('Enter');
      await page.waitForURL('**/calls/FAILED-ONE');
      await page.locator('h1').waitFor();
      await waitFor(async () => (await page.evaluate('document.activeElement.tagName')) === 'H1', 'focus on the new page heading');
      expect(errors).toEqual([]);
    } finally {
      await close();
    }
  });

  // Last: it changes what the other tests read.
  it('"Fetch now" on a pending recording brings its next attempt forward; "Retry" on a failed one makes it pending', async () => {
    const { page, errors, close } = await open('/calls/PENDING-ONE');
    try {
      const service_ = page.locator('section[aria-labelledby="service-title"]');
      await service_.getByRole('button', { name: 'Fetch now' }).waitFor();
      expect(await service_.innerText()).toContain('Recording request answered HTTP 503');
      const nextAttempt = async () => Date.parse((await service_.locator('dt:text-is("Next attempt") + dd time').getAttribute('datetime')) ?? '');
      expect(await nextAttempt()).toBeGreaterThan(Date.now() + 10 * 60_000);
      storage.setRoute('/PENDING-ONE', { kind: 'body', body: ogg, contentType: 'audio/ogg' });
      const asked = page.waitForResponse((response) => response.url().endsWith('/api/calls/PENDING-ONE/retry'));
      await service_.getByRole('button', { name: 'Fetch now' }).click();
      // Brought forward to the moment the service answered: not later than now. (Read from the
      // answer: the page may already show the recording fetched.)
      const answer = (await (await asked).json()) as { attachment: { next_attempt_at: string } };
      expect(Date.parse(answer.attachment.next_attempt_at)).toBeLessThanOrEqual(Date.now());
      await page.getByText('Asked to fetch the recording now.').first().waitFor();
      // The button is redrawn; focus is on what happened, not lost to the page's <body>.
      expect(await page.evaluate('document.activeElement?.className')).toBe('action-status');
      await service.waitForAttachment('PENDING-ONE', 'attached');
      // Redrawn live once fetched: the reader's place is kept through it.
      await service_.locator('.badge:text-is("Recorded")').waitFor();
      expect(await page.evaluate('document.activeElement?.className')).toBe('action-status');

      await page.goto('/calls/FAILED-ONE');
      await service_.getByRole('button', { name: 'Retry' }).waitFor();
      expect(await service_.locator('.badge').textContent()).toBe('Failed');
      await service_.getByRole('button', { name: 'Retry' }).click();
      await service_.locator('.badge:text-is("Pending")').waitFor();
      expect(errors).toEqual([]);
    } finally {
      await close();
    }
  });

});
