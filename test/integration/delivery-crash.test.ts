import { afterEach, describe, expect, it } from 'vitest';
import { makeDataDir, NO_POLLING, startChildService, testEnvironment, waitFor, type ChildService } from '../support/service-harness.ts';
import { openTestDatabase } from '../support/test-database.ts';
import { OUTBOUND_SECRET, startWebhookReceiver, type WebhookReceiver } from '../support/webhook-receiver.ts';

/**
 * SIGKILL during deliveries. For a webhook, "exactly once" is what a receiver that drops
 * duplicates by `webhook-id` (as the Standard Webhooks specification asks) sees: every fact
 * arrives at least once, every copy of it with the same webhook-id, and no fact is ever made
 * into two deliveries (two ids). A post cut off by the kill may arrive twice, with one id.
 */
const children: ChildService[] = [];
const receivers: WebhookReceiver[] = [];

afterEach(async () => {
  await Promise.all(children.splice(0).map((child) => child.kill('SIGKILL')));
  await Promise.all(receivers.splice(0).map((receiver) => receiver.close()));
});

async function start(env: Record<string, string>): Promise<ChildService> {
  const child = await startChildService(env);
  children.push(child);
  return child;
}

async function setUp(receiver: WebhookReceiver): Promise<Record<string, string>> {
  receivers.push(receiver);
  // No storage is needed: calls end without recordings. JOB_LEASE 1s: a dead holder's lease runs out soon.
  return testEnvironment('http://127.0.0.1:9', await makeDataDir(), {
    ...NO_POLLING,
    JOB_LEASE: '1s',
    OUTBOUND_WEBHOOK_URLS: receiver.url,
    OUTBOUND_WEBHOOK_SECRET: OUTBOUND_SECRET,
  });
}

const endedBody = (callId: string) => ({ type: 'CALL', whatsapp_call_id: callId, status: 'NOT_ANSWERED', direction: 'INCOMING', caller: '5511987654321' });

/** Every delivery row, straight from the database the service shares with its restarts. */
async function deliveryRows(env: Record<string, string>) {
  const db = await openTestDatabase(env);
  try {
    return await db.all<{ id: string; call_id: string; kind: string; state: string }>('select id, call_id, kind, state from deliveries order by call_id');
  } finally {
    await db.close();
  }
}

describe('deliveries across a SIGKILL', () => {
  it('a post in flight when the process is killed is sent again after restart, with the same webhook-id', async () => {
    const receiver = await startWebhookReceiver(OUTBOUND_SECRET);
    let release!: () => void;
    receiver.answerNext({ kind: 'held', until: new Promise<void>((resolve) => (release = resolve)) });
    const env = await setUp(receiver);
    const first = await start(env);
    expect((await first.postWebhook(endedBody('CRASH-IN-FLIGHT'))).status).toBe(200);
    await waitFor(() => receiver.received().length === 1, 'the delivery to reach the receiver');
    await first.kill('SIGKILL');
    release();

    const second = await start(env);
    await waitFor(async () => {
      const rows = await deliveryRows(env);
      return rows.length === 1 && rows.every((row) => row.state === 'delivered');
    }, 'the delivery to be made after restart');
    const rows = await deliveryRows(env);
    expect(rows).toHaveLength(1);
    const ids = receiver.received().map((each) => each.id);
    expect(ids.length).toBeGreaterThanOrEqual(2);
    expect(new Set(ids)).toEqual(new Set([rows[0]?.id]));
    expect(receiver.received().every((each) => each.error === null)).toBe(true);
    // The row is committed before the line is written: the log may lag it a little.
    await waitFor(() => second.logs().some((line) => line.delivery_id === rows[0]?.id && line.msg.startsWith('[Webhook] ✅ call.ended delivered')), 'the delivery logged');
  });

  it('killed while many calls end and are delivered: after restart each call was told once, under one webhook-id', async () => {
    const CALLS = 40;
    const receiver = await startWebhookReceiver(OUTBOUND_SECRET, { always: { kind: 'delayed', delayMs: 20 } });
    const env = await setUp(receiver);
    const first = await start(env);
    const callIds = Array.from({ length: CALLS }, (_, index) => `CRASH-${String(index).padStart(2, '0')}`);
    const acknowledged = new Set<string>();
    const sending = (async () => {
      for (const callId of callIds) {
        try {
          if ((await first.postWebhook(endedBody(callId))).status === 200) acknowledged.add(callId);
        } catch {
          return;
        }
      }
    })();
    await waitFor(() => receiver.received().length >= 8, 'deliveries under way');
    await first.kill('SIGKILL');
    await sending;

    // WaVoIP sends again what was not acknowledged.
    const second = await start(env);
    for (const callId of callIds.filter((id) => !acknowledged.has(id))) expect((await second.postWebhook(endedBody(callId))).status).toBe(200);
    await waitFor(async () => {
      const rows = await deliveryRows(env);
      return rows.length === CALLS && rows.every((row) => row.state === 'delivered');
    }, `all ${CALLS} deliveries made`, 60_000);

    const rows = await deliveryRows(env);
    expect(new Set(rows.map((row) => row.call_id))).toEqual(new Set(callIds));
    const idsByCall = new Map<string, Set<string>>();
    for (const request of receiver.received()) {
      expect(request.error).toBeNull();
      const callId = request.event?.data.whatsapp_call_id as string;
      idsByCall.set(callId, (idsByCall.get(callId) ?? new Set()).add(request.id));
    }
    expect([...idsByCall.keys()].sort()).toEqual(callIds);
    for (const [callId, ids] of idsByCall) expect([callId, [...ids]]).toEqual([callId, [rows.find((row) => row.call_id === callId)?.id]]);
  });
});
