import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeWavoipStorage, type FakeWavoipStorage } from '../support/fake-wavoip-storage.ts';
import {
  NO_POLLING,
  makeDataDir,
  runCli,
  startChildService,
  startInProcessService,
  testEnvironment,
  waitFor,
  type ChildService,
} from '../support/service-harness.ts';
import { freePort } from '../support/free-port.ts';

const ogg = fs.readFileSync(new URL('../fixtures/audio/call-pt-br-9s.ogg', import.meta.url));
const PUBLIC_URL = 'https://recordings.example.com';

let storage: FakeWavoipStorage;

beforeAll(async () => {
  storage = await startFakeWavoipStorage();
});

afterAll(async () => {
  await storage?.close();
});


describe('a service started without WEBHOOK_TOKEN', () => {
  let service: ChildService;
  let env: Record<string, string>;
  let tokenFile: string;

  beforeAll(async () => {
    env = testEnvironment(storage.origin, await makeDataDir(), { ...NO_POLLING, PORT: String(await freePort()), WEBHOOK_TOKEN: '' });
    tokenFile = path.join(env.DATA_DIR as string, 'webhook-token');
    service = await startChildService(env);
  });

  afterAll(async () => {
    await service?.kill('SIGTERM');
  });

  it('generates a webhook token into DATA_DIR, readable by its owner only, and says where (never what)', async () => {
    const token = fs.readFileSync(tokenFile, 'utf8').trim();
    expect(token.length).toBeGreaterThanOrEqual(32);
    expect((fs.statSync(tokenFile).mode & 0o777).toString(8)).toBe('600');
    // Said just after the "listening" line the harness waits for: it may not have been read yet.
    await waitFor(() => service.logs().some((line) => line.msg === `Webhook token generated and saved to ${tokenFile}`), 'where the token is');
    expect(JSON.stringify(service.logs())).not.toContain(token);
  });

  it('refuses webhooks without it', async () => {
    expect((await service.postWebhook({ type: 'RECORD', whatsapp_call_id: 'no-token', record_status: 'MIXING' }, { token: null })).status).toBe(401);
  });

  it('webhook-url prints the exact panel URL, token included, and nothing else on stdout', async () => {
    const token = fs.readFileSync(tokenFile, 'utf8').trim();
    const fromFlag = await runCli(env, 'webhook-url', '--public-url', `${PUBLIC_URL}/`);
    expect(fromFlag).toMatchObject({ code: 0, stdout: `${PUBLIC_URL}/webhooks/wavoip?token=${encodeURIComponent(token)}\n` });
    const fromSetting = await runCli({ ...env, PUBLIC_URL }, 'webhook-url');
    expect(fromSetting.stdout).toBe(fromFlag.stdout);

    // The same path and token on the service's own address is accepted.
    const url = new URL(fromFlag.stdout.trim());
    const response = await fetch(`${service.url}${url.pathname}${url.search}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ type: 'RECORD', whatsapp_call_id: 'from-panel-url', record_status: 'MIXING' }),
    });
    expect(response.status).toBe(200);
  });

  it('webhook-url without a public address says how to give one', async () => {
    const result = await runCli(env, 'webhook-url');
    expect(result.code).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr).toMatch(/set PUBLIC_URL=https:\/\/your-host, or pass --public-url https:\/\/your-host/);
  });

  it('send-test-event and the README curl work with the generated token, unchanged', async () => {
    storage.setRoute('/test123', { kind: 'body', body: ogg, contentType: 'audio/ogg' });
    const sent = await runCli(env, 'send-test-event');
    expect(sent.code).toBe(0);
    expect(sent.stdout).toMatch(/→ 200 \{"received":true/);
    expect((await service.waitForAttachment('test123')).attachment.state).toBe('attached');

    // README: curl -X POST "http://localhost:3000/webhooks/wavoip?token=$(cat data/webhook-token)" …
    const response = await fetch(`${service.url}/webhooks/wavoip?token=${fs.readFileSync(tokenFile, 'utf8').trim()}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"type":"RECORD","whatsapp_call_id":"readme-curl","record_status":"MIXING"}',
    });
    expect(response.status).toBe(200);
  });

  it('keeps the same token across a restart', async () => {
    const before = fs.readFileSync(tokenFile, 'utf8');
    await service.kill('SIGTERM');
    service = await startChildService(env);
    expect(fs.readFileSync(tokenFile, 'utf8')).toBe(before);
    expect(service.logs().some((line) => line.msg.startsWith('Webhook token generated'))).toBe(false);
    expect((await service.postWebhook({ type: 'RECORD', whatsapp_call_id: 'after-restart', record_status: 'MIXING' }, { token: before.trim() })).status).toBe(200);
  });
});

describe('WEBHOOK_TOKEN settings', () => {
  it('an explicit WEBHOOK_TOKEN wins, and no token file is made', async () => {
    const env = testEnvironment(storage.origin, await makeDataDir(), { ...NO_POLLING, WEBHOOK_TOKEN: 'explicit-token-0123' });
    const service = await startInProcessService(env);
    try {
      expect(fs.existsSync(path.join(env.DATA_DIR as string, 'webhook-token'))).toBe(false);
      expect((await service.postWebhook({ type: 'RECORD', whatsapp_call_id: 'explicit', record_status: 'MIXING' }, { token: 'explicit-token-0123' })).status).toBe(200);
      const printed = await runCli({ ...env, PUBLIC_URL }, 'webhook-url');
      expect(printed.stdout).toBe(`${PUBLIC_URL}/webhooks/wavoip?token=explicit-token-0123\n`);
    } finally {
      await service.stop();
    }
  });

  it('WEBHOOK_TOKEN=none takes webhooks without a token, and warns at start-up', async () => {
    const env = testEnvironment(storage.origin, await makeDataDir(), { ...NO_POLLING, WEBHOOK_TOKEN: 'none' });
    const service = await startInProcessService(env);
    try {
      expect((await service.postWebhook({ type: 'RECORD', whatsapp_call_id: 'open', record_status: 'MIXING' }, { token: null })).status).toBe(200);
      expect(service.logs().some((line) => line.level === 40 && /WEBHOOK_TOKEN is none: anyone who can reach/.test(line.msg))).toBe(true);
      expect(fs.existsSync(path.join(env.DATA_DIR as string, 'webhook-token'))).toBe(false);
    } finally {
      await service.stop();
    }
  });

  it(".env.example's placeholder stops the start with what to do", async () => {
    const env = testEnvironment(storage.origin, await makeDataDir(), { WEBHOOK_TOKEN: 'change-me-to-a-long-random-string' });
    const result = await runCli(env, 'serve');
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^wavoip-recordings: Invalid configuration: WEBHOOK_TOKEN: is the placeholder from \.env\.example/);
  });
});
