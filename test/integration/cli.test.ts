import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeWavoipStorage, type FakeWavoipStorage } from '../support/fake-wavoip-storage.ts';
import { makeDataDir, runCli, startChildService, testEnvironment, waitFor, type ChildService } from '../support/service-harness.ts';
import { freePort } from '../support/free-port.ts';
import { testDialect } from '../support/test-database.ts';

const ogg = fs.readFileSync(new URL('../fixtures/audio/call-pt-br-9s.ogg', import.meta.url));

let storage: FakeWavoipStorage;
let service: ChildService;
let env: Record<string, string>;


beforeAll(async () => {
  storage = await startFakeWavoipStorage();
  // API_TOKEN unset: the CLI must find the token the service generated in DATA_DIR.
  env = testEnvironment(storage.origin, await makeDataDir(), { PORT: String(await freePort()), API_TOKEN: '', POLL_MAX_WAIT: '1s' });
  service = await startChildService(env);
  service.apiToken = fs.readFileSync(path.join(env.DATA_DIR as string, 'api-token'), 'utf8').trim();
});

afterAll(async () => {
  await service?.kill('SIGTERM');
  await storage?.close();
});

describe('wavoip-recordings CLI', () => {
  // The help reads no database: shown once, on the SQLite run.
  it.skipIf(testDialect === 'postgres').each(['serve', 'migrate', 'webhook-url', 'send-test-event', 'calls', 'retry', 'backup', 'devices', 'webhook-tokens'])('explains %s with --help', async (command) => {
    const result = await runCli(env, command, '--help');
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(new RegExp(`Usage: wavoip-recordings ${command}`));
    // The help speaks of the product alone.
    expect(result.stdout).not.toMatch(/product document/i);
  });

  it('send-test-event posts the test RECORD event, with the webhook token', async () => {
    storage.setRoute('/test123', { kind: 'body', body: ogg, contentType: 'audio/ogg' });
    const result = await runCli(env, 'send-test-event');
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('{"type":"RECORD","whatsapp_call_id":"test123","record_status":"READY"}');
    expect(result.stdout).toMatch(/→ 200 \{"received":true/);
    expect(result.stdout).not.toContain(env.WEBHOOK_TOKEN);
    expect((await service.waitForAttachment('test123')).attachment.state).toBe('attached');
  });

  it('send-test-event takes --call-id and --status', async () => {
    const result = await runCli(env, 'send-test-event', '--call-id', 'cli-empty', '--status', 'EMPTY_RECORDING');
    expect(result.code).toBe(0);
    expect((await service.waitForAttachment('cli-empty')).attachment.state).toBe('empty');
  });

  it('calls lists calls, and --state filters them', async () => {
    storage.setRoute('/cli-failed', { kind: 'status', status: 404 });
    await runCli(env, 'send-test-event', '--call-id', 'cli-failed');
    await service.waitForAttachment('cli-failed', 'failed');

    const all = await runCli(env, 'calls');
    expect(all.code).toBe(0);
    expect(all.stdout).toMatch(/^FIRST SEEN\s+CALL ID\s+DIRECTION\s+PEER\s+OUTCOME\s+ATTACHMENT/);
    for (const callId of ['test123', 'cli-empty', 'cli-failed']) expect(all.stdout).toContain(callId);

    const failed = await runCli(env, 'calls', '--state', 'failed', '--json');
    const page = JSON.parse(failed.stdout) as { calls: { whatsapp_call_id: string; attachment: { reason: string } }[] };
    expect(page.calls.map((call) => call.whatsapp_call_id)).toEqual(['cli-failed']);
    expect(page.calls[0]?.attachment.reason).toMatch(/not available in time/);
  });

  it('retry fetches a failed recording again', async () => {
    storage.setRoute('/cli-failed', { kind: 'body', body: ogg, contentType: 'audio/ogg' });
    const result = await runCli(env, 'retry', 'cli-failed');
    expect(result.code).toBe(0);
    expect(result.stdout).toBe('Call cli-failed: attachment is pending; fetching the recording now.\n');
    expect((await service.waitForAttachment('cli-failed', 'attached')).attachment.size).toBe(ogg.length);
  });

  it('reads settings from a .env file in the working directory', async () => {
    const dotenv = path.join(env.DATA_DIR as string, '.env');
    fs.writeFileSync(dotenv, 'DOWNLOAD_CONCURRENCY=lots\n');
    try {
      const result = await runCli(env, 'calls');
      expect(result.code).toBe(1);
      expect(result.stderr).toMatch(/Invalid configuration: DOWNLOAD_CONCURRENCY/);
    } finally {
      fs.rmSync(dotenv);
    }
  });

  it('fails with one clear line and a non-zero exit code', async () => {
    const notFailed = await runCli(env, 'retry', 'test123');
    expect(notFailed.code).toBe(1);
    expect(notFailed.stderr).toMatch(/^wavoip-recordings: call test123 is attached; only a failed or pending recording can be retried\n$/);

    const badState = await runCli(env, 'calls', '--state', 'lost');
    expect(badState.code).not.toBe(0);
    expect(badState.stderr).toMatch(/must be one of/);

    const unreachable = await runCli(env, 'calls', '--url', 'http://127.0.0.1:1');
    expect(unreachable.code).toBe(1);
    expect(unreachable.stderr).toMatch(/could not reach .* \(is the service running\?\)/);
  });

  it('webhook-tokens creates a token (printed once, with the panel URL), lists and revokes it; devices lists the devices', async () => {
    const created = await runCli({ ...env, PUBLIC_URL: 'https://recordings.example.com' }, 'webhook-tokens', 'create', 'cli group');
    expect(created.code).toBe(0);
    const [, id, token] = /^Webhook token (\w+) for device group cli group; it is shown only now, keep it:\n([\w-]{43})\n/.exec(created.stdout) ?? [];
    expect(created.stdout).toContain(`WaVoIP panel webhook URL for this group's devices:\nhttps://recordings.example.com/webhooks/wavoip?token=${token}\n`);

    expect((await service.postWebhook({ type: 'DEVICE', action: 'UPDATE', id_session: 'cli-device', phone: '5566999050312', status: 'WAITING_PAYMENT' }, { token })).status).toBe(200);
    await waitFor(async () => (await service.api('/api/devices/cli-device')).status === 200, 'the device applied');
    const devices = await runCli(env, 'devices', '--tenant', 'cli group');
    expect(devices.code).toBe(0);
    expect(devices.stdout).toMatch(/^ID SESSION\s+PHONE\s+STATUS\s+STATUS SINCE\s+LAST WEBHOOK\s+CALLS 24H\s+SILENT\s+TENANT\n/);
    expect(devices.stdout).toMatch(/\ncli-device\s+\+5566999050312\s+payment_required \(WAITING_PAYMENT\)\s+\S+\s+\S+\s+0\s+cli group\n$/);
    const json = JSON.parse((await runCli(env, 'devices', '--json', '--status', 'payment_required')).stdout) as { devices: { id_session: string }[] };
    expect(json.devices.map((device) => device.id_session)).toEqual(['cli-device']);

    const listed = await runCli(env, 'webhook-tokens', 'list');
    expect(listed.stdout).toMatch(new RegExp(`^ID\\s+LABEL\\s+CREATED\\s+REVOKED\\n${id}\\s+cli group\\s+\\S+\\n$`));
    expect(listed.stdout).not.toContain(token);

    const revoked = await runCli(env, 'webhook-tokens', 'revoke', id!);
    expect(revoked.code).toBe(0);
    expect(revoked.stdout).toMatch(new RegExp(`^Webhook token ${id} of device group cli group revoked at \\S+: webhooks with it are refused \\(401\\)\\.\\n$`));
    expect((await service.postWebhook({ type: 'DEVICE', id_session: 'cli-device', phone: '5566999050312', status: 'open' }, { token })).status).toBe(401);

    const badLabel = await runCli(env, 'webhook-tokens', 'create', 'no;semicolons');
    expect(badLabel.code).not.toBe(0);
    expect(badLabel.stderr).toMatch(/must be 1 to 64 letters/);
  });
});
