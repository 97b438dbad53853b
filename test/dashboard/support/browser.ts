import { existsSync, readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { describe, expect } from 'vitest';
import { API_TOKEN, type ServiceClient } from '../../support/service-harness.ts';

export const CHROMIUM_PATH = '/usr/bin/chromium';
const chromiumPresent = existsSync(CHROMIUM_PATH);
if (!chromiumPresent) {
  if (process.env.TEST_REQUIRE_CHROMIUM === '1') throw new Error(`TEST_REQUIRE_CHROMIUM=1 but there is no Chromium at ${CHROMIUM_PATH} (apt-get install chromium)`);
  console.warn(`\n⚠ No Chromium at ${CHROMIUM_PATH}: the dashboard's browser tests are skipped. Install it (apt-get install chromium) to run them.\n`);
}
/** The browser tests' describe: skipped, with the warning above, only where Chromium is missing and not required. */
export const describeInChromium = describe.skipIf(!chromiumPresent);

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const ARTIFACTS_DIR = path.join(REPO_ROOT, 'test-artifacts');
const AXE_SOURCE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

/**
 * The Debian Chromium, headless, talking to loopback only. Playwright gives every launch a
 * fresh temporary profile (user-data-dir), removed on close.
 */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

/** A browser context signed in as a person would be: the session cookie from POST /api/session. */
export async function dashboardContext(
  browser: Browser,
  service: ServiceClient,
  options: { locale?: string; viewport?: { width: number; height: number } } = {},
): Promise<BrowserContext> {
  const signIn = await fetch(`${service.url}/api/session`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ password: API_TOKEN }) });
  expect(signIn.status).toBe(200);
  const cookie = /wavoip_session=([^;]+)/.exec(signIn.headers.get('set-cookie') ?? '')?.[1];
  if (cookie === undefined) throw new Error('POST /api/session set no wavoip_session cookie');
  const context = await browser.newContext({ locale: options.locale ?? 'en-US', viewport: options.viewport ?? { width: 1280, height: 900 }, baseURL: service.url });
  await context.addCookies([{ name: 'wavoip_session', value: cookie, url: service.url, httpOnly: true, sameSite: 'Strict' }]);
  return context;
}

/** Every uncaught exception and console error on the page: a test expects none. */
export function collectPageErrors(page: Page): string[] {
  const errors: string[] = [];
  page.on('pageerror', (error) => errors.push(`uncaught: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error') errors.push(`console: ${message.text()} (${message.location().url})`);
  });
  return errors;
}

/** axe-core's serious and critical findings (its source is evaluated: the CSP rightly blocks an injected <script>). */
export async function seriousAccessibilityViolations(page: Page): Promise<string[]> {
  await page.evaluate(AXE_SOURCE);
  // A string: the test code has no DOM types, and this runs in the page.
  const violations = (await page.evaluate(`axe.run(document, { resultTypes: ['violations'] }).then((result) => result.violations.map((violation) => ({
    id: violation.id, impact: violation.impact, help: violation.help, targets: violation.nodes.map((node) => JSON.stringify(node.target)),
  })))`)) as { id: string; impact: string | null; help: string; targets: string[] }[];
  return violations.filter((violation) => violation.impact === 'serious' || violation.impact === 'critical').map((violation) => `${violation.id} (${violation.impact}): ${violation.help} at ${violation.targets.join(', ')}`);
}

export async function screenshot(page: Page, name: string): Promise<void> {
  await fs.mkdir(ARTIFACTS_DIR, { recursive: true });
  await page.screenshot({ path: path.join(ARTIFACTS_DIR, `${name}.png`), fullPage: true });
}

/** True when the page is wider than its viewport (a phone would scroll sideways). */
export function scrollsSideways(page: Page): Promise<boolean> {
  return page.evaluate('document.documentElement.scrollWidth > document.documentElement.clientWidth') as Promise<boolean>;
}

/** The few media properties the tests read in the page (the test code has no DOM types). */
export interface MediaElement {
  currentTime: number;
  duration: number;
  paused: boolean;
  play(): Promise<void>;
}

/** Every request the service received for a path starting with `prefix`, with its Range header and answer. */
export function recordRequests(server: import('node:http').Server, prefix: string): { range: string | undefined; status: () => number }[] {
  const seen: { range: string | undefined; status: () => number }[] = [];
  server.on('request', (request: import('node:http').IncomingMessage, response: import('node:http').ServerResponse) => {
    if (request.url?.startsWith(prefix)) seen.push({ range: request.headers.range, status: () => response.statusCode });
  });
  return seen;
}
