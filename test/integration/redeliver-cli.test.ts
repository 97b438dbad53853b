import { afterAll, describe, expect, it } from 'vitest';
import { makeDataDir, NO_POLLING, runCli, startChildService, testEnvironment, waitFor, type ChildService } from '../support/service-harness.ts';
import { OUTBOUND_SECRET, startWebhookReceiver, type WebhookReceiver } from '../support/webhook-receiver.ts';

let service: ChildService | undefined;
let receiver: WebhookReceiver | undefined;

afterAll(async () => {
  await service?.kill('SIGTERM');
  await receiver?.close();
});

describe('wavoip-recordings redeliver', () => {
  it('sends a call again, and backfills with --since', async () => {
    receiver = await startWebhookReceiver(OUTBOUND_SECRET);
    const env = testEnvironment('http://127.0.0.1:9', await makeDataDir(), { ...NO_POLLING, OUTBOUND_WEBHOOK_URLS: receiver.url, OUTBOUND_WEBHOOK_SECRET: OUTBOUND_SECRET });
    service = await startChildService(env);
    await service.postWebhook({ type: 'CALL', whatsapp_call_id: 'CLI-REDELIVER', status: 'REJECTED' });
    await waitFor(() => receiver?.received().length === 1, 'the first delivery');

    const again = await runCli(env, 'redeliver', 'CLI-REDELIVER', '--url', service.url);
    expect([again.code, again.stderr]).toEqual([0, '']);
    expect(again.stdout).toMatch(/^Call CLI-REDELIVER: 1 deliveries added\.\n {2}webhook:http:\/\/127\.0\.0\.1:\d+\/…#[0-9a-f]{8} {2}call {2}(delivered|pending)\n/);
    await waitFor(() => receiver?.received().length === 2, 'the redelivery');
    expect(new Set(receiver.received().map((each) => each.id)).size).toBe(2);

    const backfill = await runCli(env, 'redeliver', '--since', '2020-01-01', '--url', service.url);
    expect(backfill.stdout).toBe('0 deliveries added for calls first seen since 2020-01-01 (1 calls looked at).\n');
  }, 60_000);

  it('refuses what it cannot do with one clear line', async () => {
    const env = testEnvironment('http://127.0.0.1:9', await makeDataDir(), NO_POLLING);
    const url = service?.url as string;
    expect(await runCli(env, 'redeliver', '--url', url)).toMatchObject({ code: 1, stderr: 'wavoip-recordings: name one call id, or pass --since <date>\n' });
    const badDate = await runCli(env, 'redeliver', '--since', 'last week', '--url', url);
    expect(badDate).toMatchObject({ code: 1, stderr: expect.stringMatching(/since must be a date such as 2024-05-01/) });
    const unknown = await runCli(env, 'redeliver', 'NO-SUCH-CALL', '--url', url);
    expect(unknown).toMatchObject({ code: 1, stderr: 'wavoip-recordings: no call with whatsapp_call_id "NO-SUCH-CALL"\n' });
  }, 60_000);
});
