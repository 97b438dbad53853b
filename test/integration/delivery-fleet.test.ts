import { afterAll, describe, expect, it } from 'vitest';
import { makeDataDir, NO_POLLING, startChildService, testEnvironment, waitFor, WEBHOOK_TOKEN, type ChildService } from '../support/service-harness.ts';
import { databaseEnvironment, openTestDatabase, testDialect } from '../support/test-database.ts';
import { OUTBOUND_SECRET, startWebhookReceiver, type WebhookReceiver } from '../support/webhook-receiver.ts';

/** Replicas on one PostgreSQL share the outbox: each delivery is made by one of them, once. */
const CALLS = 120;
const replicas: ChildService[] = [];
let receiver: WebhookReceiver | undefined;

afterAll(async () => {
  await Promise.all(replicas.map((replica) => replica.kill('SIGKILL')));
  await receiver?.close();
});

describe.skipIf(testDialect !== 'postgres')('deliveries shared by two replicas on PostgreSQL', () => {
  it(`${CALLS} calls ending across both replicas: each told once, the work shared`, async () => {
    receiver = await startWebhookReceiver(OUTBOUND_SECRET, { always: { kind: 'delayed', delayMs: 15 } });
    const database = databaseEnvironment();
    const settings = { ...NO_POLLING, ...database, OUTBOUND_WEBHOOK_URLS: receiver.url, OUTBOUND_WEBHOOK_SECRET: OUTBOUND_SECRET, DELIVERY_CONCURRENCY: '4' };
    const env = testEnvironment('http://127.0.0.1:9', await makeDataDir(), settings);
    for (let index = 0; index < 2; index += 1) replicas.push(await startChildService(testEnvironment('http://127.0.0.1:9', await makeDataDir(), settings)));

    const callIds = Array.from({ length: CALLS }, (_, index) => `FLEET-DLV-${String(index).padStart(3, '0')}`);
    await Promise.all(
      callIds.map(async (callId, index) => {
        const replica = replicas[index % 2] as ChildService;
        const response = await fetch(`${replica.url}/webhooks/wavoip?token=${WEBHOOK_TOKEN}`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ type: 'CALL', whatsapp_call_id: callId, status: 'NOT_ANSWERED' }),
        });
        expect(response.status).toBe(200);
      }),
    );
    const db = await openTestDatabase(env);
    try {
      await waitFor(async () => (await db.get<{ n: number }>("select count(*) as n from deliveries where state = 'delivered'"))?.n === CALLS, `all ${CALLS} delivered`, 60_000);
    } finally {
      await db.close();
    }
    const requests = receiver.received();
    expect(requests.every((request) => request.error === null)).toBe(true);
    expect(requests.map((request) => request.event?.data.whatsapp_call_id).sort()).toEqual(callIds);
    const deliveredBy = replicas.map((replica) => replica.logs().filter((line) => String(line.msg).startsWith('[Webhook] ✅')).length);
    expect(deliveredBy[0]! + deliveredBy[1]!).toBe(CALLS);
    expect(deliveredBy.every((count) => count > 0)).toBe(true);
  });
});
