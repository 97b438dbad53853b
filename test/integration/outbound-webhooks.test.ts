import fs from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createRecordingLinks } from '../../src/delivery/recording-link.ts';
import { startFakeWavoipStorage, type FakeWavoipStorage } from '../support/fake-wavoip-storage.ts';
import { makeDataDir, NO_POLLING, startInProcessService, testEnvironment, waitFor, type InProcessService, type DeliveryView } from '../support/service-harness.ts';
import { openTestDatabase } from '../support/test-database.ts';

/** How a receiver's URL is shown: its origin, and the start of the whole URL's sha256 (the path may hold a key). */
const shownUrl = (url: string) => `${new URL(url).origin}/…#${sha256(url).slice(0, 8)}`;
import { OUTBOUND_SECRET, startWebhookReceiver, type ReceiverAnswer, type WebhookReceiver } from '../support/webhook-receiver.ts';
import { sha256 } from '../support/sha256.ts';

const ogg = fs.readFileSync(new URL('../fixtures/audio/call-pt-br-9s.ogg', import.meta.url));
const oggSha256 = sha256(ogg);
/** Retries within a test's patience; the schedule's shape is the pure scheduleRetry's, tested on its own. */
const FAST_RETRIES = { deliveryRetry: { initialDelayMs: 50, maxDelayMs: 200, probeIntervalMs: 200 } };

let storage: FakeWavoipStorage;
const services: InProcessService[] = [];
const receivers: WebhookReceiver[] = [];

beforeAll(async () => {
  storage = await startFakeWavoipStorage();
});
afterEach(async () => {
  await Promise.all(services.splice(0).map((service) => service.stop()));
  await Promise.all(receivers.splice(0).map((receiver) => receiver.close()));
});
afterAll(async () => {
  await storage?.close();
});

async function setUp(options: { env?: Record<string, string>; answers?: ReceiverAnswer[]; httpTimeouts?: { headersTimeoutMs: number } } = {}) {
  const receiver = await startWebhookReceiver(OUTBOUND_SECRET);
  receivers.push(receiver);
  receiver.answerNext(...(options.answers ?? []));
  const env = testEnvironment(storage.origin, await makeDataDir(), {
    ...NO_POLLING,
    OUTBOUND_WEBHOOK_URLS: receiver.url,
    OUTBOUND_WEBHOOK_SECRET: OUTBOUND_SECRET,
    ...options.env,
  });
  const service = await startInProcessService(env, { ...FAST_RETRIES, httpTimeouts: options.httpTimeouts });
  services.push(service);
  return { receiver, service, env };
}

async function endCall(service: InProcessService, callId: string): Promise<void> {
  for (const status of ['ACTIVE', 'ENDED']) {
    const response = await service.postWebhook({ type: 'CALL', whatsapp_call_id: callId, status, direction: 'INCOMING', caller: '5511987654321', receiver: '5511933334444', duration: status === 'ENDED' ? 9 : 0 });
    expect(response.status).toBe(200);
  }
}

/** The call's deliveries; none while the call is not applied yet (PostgreSQL answers the webhook first). */
async function deliveriesOf(service: InProcessService, callId: string): Promise<DeliveryView[]> {
  const response = await service.api(`/api/calls/${encodeURIComponent(callId)}`);
  if (response.status === 404) return [];
  return ((await response.json()) as { deliveries: DeliveryView[] }).deliveries;
}

async function waitForDelivered(service: InProcessService, callId: string, count: number): Promise<DeliveryView[]> {
  let last: DeliveryView[] = [];
  await waitFor(async () => {
    last = await deliveriesOf(service, callId);
    return last.filter((delivery) => delivery.state === 'delivered').length >= count;
  }, `${count} deliveries of ${callId} delivered (last: ${JSON.stringify(last)})`);
  return last;
}

const typesFor = (receiver: WebhookReceiver, callId: string) =>
  receiver.accepted().filter((each) => each.event?.data.whatsapp_call_id === callId).map((each) => each.event?.type);

describe('signed outbound webhooks', () => {
  it('sends call.ended, then recording.attached with a signed link that needs no API token, every request verified by standardwebhooks', async () => {
    const { receiver, service } = await setUp();
    await endCall(service, 'WH-ATTACHED');
    storage.setRoute('/WH-ATTACHED', { kind: 'body', body: ogg, contentType: 'audio/ogg' });
    await service.postReady('WH-ATTACHED', storage.url('/WH-ATTACHED'));
    const deliveries = await waitForDelivered(service, 'WH-ATTACHED', 2);

    expect(receiver.received().every((each) => each.error === null)).toBe(true);
    expect(typesFor(receiver, 'WH-ATTACHED')).toEqual(['call.ended', 'recording.attached']);
    const [ended, attached] = receiver.accepted();
    expect(ended?.event?.data).toMatchObject({
      whatsapp_call_id: 'WH-ATTACHED',
      direction: 'incoming',
      direction_raw: 'INCOMING',
      peer_phone: '+5511987654321',
      outcome: 'answered',
      caller: '5511987654321',
      status: 'ENDED',
      duration: 9,
    });
    expect(ended?.id).toBe(deliveries.find((delivery) => delivery.kind === 'call')?.id);
    expect(attached?.event?.data.recording).toMatchObject({ size: ogg.length, sha256: oggSha256, content_type: 'audio/ogg' });
    expect(deliveries.map((delivery) => [delivery.kind, delivery.state, delivery.attempts])).toEqual([
      ['call', 'delivered', 1],
      ['recording', 'delivered', 1],
    ]);
    expect(deliveries[1]?.external_ids).toEqual({ webhook_id: attached?.id });
    expect(service.logs().some((line) => line.msg === `[Webhook] ✅ recording.attached delivered to ${shownUrl(receiver.url)}`)).toBe(true);

    const link = attached?.event?.data.recording?.url as string;
    const whole = await fetch(link);
    expect(whole.status).toBe(200);
    expect(Buffer.from(await whole.arrayBuffer()).equals(ogg)).toBe(true);
    const part = await fetch(link, { headers: { range: 'bytes=0-9' } });
    expect(part.status).toBe(206);
    expect(Buffer.from(await part.arrayBuffer()).equals(ogg.subarray(0, 10))).toBe(true);
    expect(part.headers.get('x-content-type-options')).toBe('nosniff');
    // The link is a credential: not cached, not passed on, not quoted back.
    expect([whole.headers.get('cache-control'), whole.headers.get('referrer-policy')]).toEqual(['private, no-store', 'no-referrer']);
    const token = new URL(link).pathname.split('/').at(-1) as string;
    const stray = await fetch(`${link}/more`);
    expect(stray.status).toBe(404);
    expect(await stray.json()).toEqual({ error: 'no route for GET /recordings/[redacted]' });
    expect(JSON.stringify(service.logs())).not.toContain(token);
  });

  it.each([
    ['DISABLED', 'recording is off on the device (DISABLED)'],
    ['EMPTY_RECORDING', 'the call was too short to record (EMPTY_RECORDING)'],
  ])('sends recording.unavailable for %s, with the reason', async (status, reason) => {
    const { receiver, service } = await setUp();
    const callId = `WH-${status}`;
    await endCall(service, callId);
    await service.postWebhook({ type: 'RECORD', whatsapp_call_id: callId, record_status: status });
    await waitForDelivered(service, callId, 2);
    const unavailable = receiver.accepted().find((each) => each.event?.type === 'recording.unavailable');
    expect(unavailable?.event?.data).toMatchObject({ whatsapp_call_id: callId, reason });
    expect(typesFor(receiver, callId)).toEqual(['call.ended', 'recording.unavailable']);
  });

  it('sends recording.unavailable when the recording fails, and recording.attached when a retry then succeeds', async () => {
    const { receiver, service } = await setUp();
    await endCall(service, 'WH-FAILED');
    storage.setRoute('/WH-FAILED', { kind: 'status', status: 403 });
    await service.postReady('WH-FAILED', storage.url('/WH-FAILED'));
    await waitForDelivered(service, 'WH-FAILED', 2);
    const failed = receiver.accepted().find((each) => each.event?.type === 'recording.unavailable');
    expect(failed?.event?.data.reason).toMatch(/403/);

    storage.setRoute('/WH-FAILED', { kind: 'body', body: ogg, contentType: 'audio/ogg' });
    expect((await service.api('/api/calls/WH-FAILED/retry', { method: 'POST' })).status).toBe(202);
    await waitForDelivered(service, 'WH-FAILED', 3);
    expect(typesFor(receiver, 'WH-FAILED')).toEqual(['call.ended', 'recording.unavailable', 'recording.attached']);
  });

  it('retries on 500, 429 (with Retry-After), 503, a reset and a timeout, always with the same webhook-id, then delivers', async () => {
    const { receiver, service } = await setUp({
      answers: [
        { kind: 'status', status: 500 },
        { kind: 'status', status: 429, headers: { 'retry-after': '0' } },
        { kind: 'reset' },
        { kind: 'stall' },
        { kind: 'status', status: 503 },
      ],
      httpTimeouts: { headersTimeoutMs: 300 },
    });
    await endCall(service, 'WH-RETRIED');
    const [delivery] = await waitForDelivered(service, 'WH-RETRIED', 1);
    const requests = receiver.received();
    expect(requests.map((each) => each.answer)).toEqual([500, 429, 'reset', 'stall', 503, 200]);
    expect(new Set(requests.map((each) => each.id))).toEqual(new Set([delivery?.id]));
    expect(requests.every((each) => each.error === null)).toBe(true);
    expect(delivery).toMatchObject({ state: 'delivered', attempts: 6 });
    const retryLines = service.logs().filter((line) => line.delivery_id === delivery?.id && /failed \(.*\); retrying in/.test(line.msg));
    expect(retryLines).toHaveLength(5);
    expect(retryLines.some((line) => /HTTP 429/.test(line.msg))).toBe(true);
    const metrics = await (await service.api('/metrics')).text();
    const label = `destination="webhook:${shownUrl(receiver.url)}",kind="call"`;
    expect(metrics).toContain(`wavoip_recordings_delivery_attempts_total{${label},outcome="retry"} 5`);
    expect(metrics).toContain(`wavoip_recordings_delivery_attempts_total{${label},outcome="delivered"} 1`);
    expect(metrics).toContain(`wavoip_recordings_deliveries_waiting{destination="webhook:${shownUrl(receiver.url)}"} 0`);
  });

  it('a receiver slower than the lease keeps its one delivery: the lease is renewed while it runs', async () => {
    let release!: () => void;
    const slow = new Promise<void>((resolve) => (release = resolve));
    const { receiver, service } = await setUp({ env: { JOB_LEASE: '1s' }, answers: [{ kind: 'held', until: slow }] });
    await endCall(service, 'WH-SLOW');
    await waitFor(() => receiver.received().length === 1, 'the delivery in flight');
    // Held for three leases: only renewals keep the lease (and the attempt) alive that long.
    const leaseRenewedPast = Date.now() + 3_000;
    await waitFor(() => Date.now() > leaseRenewedPast, 'three leases to pass');
    release();
    const [delivery] = await waitForDelivered(service, 'WH-SLOW', 1);
    expect(delivery?.attempts).toBe(1);
    expect(receiver.received()).toHaveLength(1);
    expect(service.logs().some((line) => /interrupted/.test(line.msg))).toBe(false);
  });

  it('never sends the recording before its call: a call.ended that keeps failing holds back the recording attached meanwhile', async () => {
    const { receiver, service } = await setUp({ answers: Array.from({ length: 4 }, () => ({ kind: 'status' as const, status: 500 })) });
    storage.setRoute('/WH-ORDER', { kind: 'body', body: ogg, contentType: 'audio/ogg' });
    // READY first: the recording is attached before the call is ever said to end.
    await service.postReady('WH-ORDER', storage.url('/WH-ORDER'));
    await waitForDelivered(service, 'WH-ORDER', 2);
    const types = receiver.received().map((each) => `${each.event?.type}:${each.answer}`);
    expect(types).toEqual(['call.ended:500', 'call.ended:500', 'call.ended:500', 'call.ended:500', 'call.ended:200', 'recording.attached:200']);
  });

  it('a receiver answering 410 disables its URL, with a warning, and nothing more is sent there', async () => {
    const { receiver, service, env } = await setUp({ answers: [{ kind: 'status', status: 410 }] });
    await endCall(service, 'WH-GONE');
    await waitFor(() => service.logs().some((line) => /disabled: .*410/.test(line.msg) && line.level === 40), 'the 410 warning');
    const [delivery] = await deliveriesOf(service, 'WH-GONE');
    expect(delivery).toMatchObject({ state: 'cancelled' });
    const destinations = (await (await service.api('/api/destinations')).json()) as { destinations: { state: string; reason: string }[] };
    expect(destinations.destinations[0]).toMatchObject({ state: 'disabled', reason: expect.stringMatching(/410/) });

    await endCall(service, 'WH-AFTER-GONE');
    storage.setRoute('/WH-AFTER-GONE', { kind: 'body', body: ogg, contentType: 'audio/ogg' });
    await service.postReady('WH-AFTER-GONE', storage.url('/WH-AFTER-GONE'));
    await service.waitForAttachment('WH-AFTER-GONE', 'attached');
    expect(await deliveriesOf(service, 'WH-AFTER-GONE')).toEqual([]);
    expect(receiver.received()).toHaveLength(1);
    // Kept in the database: a restart does not send to it again.
    await service.stop();
    const again = await startInProcessService(env, FAST_RETRIES);
    services.push(again);
    expect(((await (await again.api('/api/destinations')).json()) as { destinations: { state: string }[] }).destinations[0]?.state).toBe('disabled');

    // The receiver fixed, an operator resets it: new calls go there again (what was cancelled is redelivered on request).
    const name = (await deliveriesOf(again, 'WH-GONE'))[0]?.destination as string;
    const reset = await again.api(`/api/destinations/reset?destination=${encodeURIComponent(name)}`, { method: 'POST' });
    expect(await reset.json()).toEqual({ name, state: 'open', was: 'disabled' });
    await endCall(again, 'WH-AFTER-RESET');
    await waitForDelivered(again, 'WH-AFTER-RESET', 1);
    expect((await again.api('/api/destinations/reset?destination=nowhere', { method: 'POST' })).status).toBe(400);
  });

  it('a 401 blocks the destination without using up retries: /readyz says degraded, and once the receiver is fixed everything resumes', async () => {
    const { receiver, service } = await setUp({ answers: Array.from({ length: 3 }, () => ({ kind: 'status' as const, status: 401 })) });
    const ready = async () => (await (await fetch(`${service.url}/readyz`)).json()) as Record<string, unknown>;
    expect(await ready()).toEqual({ status: 'ready', database: 'ok', storage: 'ok', deliveries: 'ok' });
    await endCall(service, 'WH-BLOCKED-1');
    await waitFor(() => service.logs().some((line) => /is blocked: .*401/.test(line.msg)), 'the blocked line');
    await endCall(service, 'WH-BLOCKED-2');
    expect(await ready()).toEqual({ status: 'degraded', database: 'ok', storage: 'ok', deliveries: 'blocked' });
    const metrics = await (await service.api('/metrics')).text();
    expect(metrics).toContain(`wavoip_recordings_destination_blocked{destination="webhook:${shownUrl(receiver.url)}",state="blocked"} 1`);

    // The probes (one per interval) meet the remaining 401s, then the fixed receiver.
    const [first] = await waitForDelivered(service, 'WH-BLOCKED-1', 1);
    await waitForDelivered(service, 'WH-BLOCKED-2', 1);
    expect(first?.attempts).toBe(1);
    expect(await ready()).toMatchObject({ status: 'ready', deliveries: 'ok' });
    expect(service.logs().some((line) => /takes deliveries again/.test(line.msg))).toBe(true);
    expect(receiver.received().filter((each) => each.answer === 401)).toHaveLength(3);
  });

  it('redelivers a call on request with new webhook-ids, and backfills calls from before the destination was configured', async () => {
    const withoutDestination = testEnvironment(storage.origin, await makeDataDir(), NO_POLLING);
    const before = await startInProcessService(withoutDestination);
    await endCall(before, 'WH-BEFORE');
    await before.waitForAttachment('WH-BEFORE', 'pending');
    await before.stop();

    const receiver = await startWebhookReceiver(OUTBOUND_SECRET);
    receivers.push(receiver);
    const service = await startInProcessService({ ...withoutDestination, OUTBOUND_WEBHOOK_URLS: receiver.url, OUTBOUND_WEBHOOK_SECRET: OUTBOUND_SECRET }, FAST_RETRIES);
    services.push(service);
    expect(await deliveriesOf(service, 'WH-BEFORE')).toEqual([]);
    // Not a date, and a date that does not exist (rather than rolled over into March).
    for (const since of ['yesterday', '2024-02-31', '2024-05-01T12:00:00']) {
      const refused = await service.api(`/api/deliveries/backfill?since=${since}`, { method: 'POST' });
      expect([refused.status, ((await refused.json()) as { field: string }).field]).toEqual([400, 'since']);
    }

    const backfill = await service.api('/api/deliveries/backfill?since=2020-01-01', { method: 'POST' });
    expect(await backfill.json()).toMatchObject({ calls: 1, deliveries: 1 });
    await waitForDelivered(service, 'WH-BEFORE', 1);
    // Run again, it adds nothing: the fact was told.
    expect(await (await service.api('/api/deliveries/backfill?since=2020-01-01', { method: 'POST' })).json()).toMatchObject({ deliveries: 0 });

    const redeliver = await service.api('/api/calls/WH-BEFORE/redeliver', { method: 'POST' });
    expect(redeliver.status).toBe(202);
    await waitForDelivered(service, 'WH-BEFORE', 2);
    const ids = receiver.accepted().map((each) => each.id);
    expect(receiver.accepted().map((each) => each.event?.type)).toEqual(['call.ended', 'call.ended']);
    expect(new Set(ids).size).toBe(2);
    const unknown = await service.api('/api/calls/WH-BEFORE/redeliver?destination=nowhere', { method: 'POST' });
    expect([unknown.status, ((await unknown.json()) as { field: string }).field]).toEqual([400, 'destination']);
    expect((await service.api('/api/calls/NO-SUCH-CALL/redeliver', { method: 'POST' })).status).toBe(404);
  });

  it('keeps the secret, and keys in the URL, out of the log, the API and the metrics', async () => {
    const receiver = await startWebhookReceiver(OUTBOUND_SECRET);
    receivers.push(receiver);
    const keyed = receiver.url.replace('http://', 'http://hook-user:hook-password@') + '?key=query-s3cret&b=2';
    const env = testEnvironment(storage.origin, await makeDataDir(), { ...NO_POLLING, OUTBOUND_WEBHOOK_URLS: keyed, OUTBOUND_WEBHOOK_SECRET: OUTBOUND_SECRET });
    const service = await startInProcessService(env, FAST_RETRIES);
    services.push(service);
    await endCall(service, 'WH-SECRETS');
    const [delivery] = await waitForDelivered(service, 'WH-SECRETS', 1);
    const shown = `webhook:http://${new URL(receiver.url).host}/…#${sha256(keyed).slice(0, 8)}`;
    expect(delivery?.destination).toBe(shown);
    const everything = [
      JSON.stringify(service.logs()),
      await (await service.api('/api/calls/WH-SECRETS')).text(),
      await (await service.api('/api/destinations')).text(),
      await (await service.api('/metrics')).text(),
    ].join('\n');
    for (const secret of [OUTBOUND_SECRET, OUTBOUND_SECRET.slice('whsec_'.length), 'hook-password', 'query-s3cret']) expect(everything).not.toContain(secret);
    expect(receiver.accepted()).toHaveLength(1);
    expect(receiver.accepted()[0]?.authorization).toBe(`Basic ${Buffer.from('hook-user:hook-password').toString('base64')}`);
  });

  it('keeps two receivers apart that differ only in a key of their URL: each gets every event', async () => {
    const receiver = await startWebhookReceiver(OUTBOUND_SECRET);
    receivers.push(receiver);
    const urls = [`${receiver.url}?key=customer-a`, `${receiver.url}?key=customer-b`, `${receiver.url.replace('/hooks/calls', '/hooks/s3cret-path')}`];
    const env = testEnvironment(storage.origin, await makeDataDir(), { ...NO_POLLING, OUTBOUND_WEBHOOK_URLS: urls.join(','), OUTBOUND_WEBHOOK_SECRET: OUTBOUND_SECRET });
    const service = await startInProcessService(env, FAST_RETRIES);
    services.push(service);
    await endCall(service, 'WH-TWO-KEYS');
    const deliveries = await waitForDelivered(service, 'WH-TWO-KEYS', 3);
    expect(new Set(deliveries.map((delivery) => delivery.destination))).toEqual(new Set(urls.map((url) => `webhook:${shownUrl(url)}`)));
    expect(receiver.accepted().filter((request) => request.event?.data.whatsapp_call_id === 'WH-TWO-KEYS')).toHaveLength(3);
    expect(await (await service.api('/api/destinations')).text()).not.toContain('s3cret-path');
  });

  it('generates a whsec_ secret into DATA_DIR when none is set, and signs with it', async () => {
    const dataDir = await makeDataDir();
    const generated = path.join(dataDir, 'outbound-webhook-secret');
    const probe = await startWebhookReceiver(OUTBOUND_SECRET);
    receivers.push(probe);
    const service = await startInProcessService(testEnvironment(storage.origin, dataDir, { ...NO_POLLING, OUTBOUND_WEBHOOK_URLS: probe.url }), FAST_RETRIES);
    services.push(service);
    const secret = fs.readFileSync(generated, 'utf8').trim();
    expect(secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
    expect((fs.statSync(generated).mode & 0o777).toString(8)).toBe('600');
    expect(service.logs().some((line) => line.msg === `Outbound webhook secret generated and saved to ${generated}: give it to the receivers to verify signatures`)).toBe(true);
    expect(JSON.stringify(service.logs())).not.toContain(secret.slice('whsec_'.length));
    await endCall(service, 'WH-GENERATED');
    await waitForDelivered(service, 'WH-GENERATED', 1);
    // Signed with the generated secret, not the tests' usual one.
    expect(probe.received()[0]?.error).toBe('No matching signature found');
    const { Webhook } = await import('standardwebhooks');
    const request = probe.received()[0]!;
    expect(new Webhook(secret).verify(request.body, { 'webhook-id': request.id, 'webhook-timestamp': request.timestamp, 'webhook-signature': request.signature })).toMatchObject({ type: 'call.ended' });
  });
});

describe('signed recording links', () => {
  it('answer 403 when tampered with or expired, and 410 once the recording is gone', async () => {
    const { receiver, service, env } = await setUp();
    await endCall(service, 'WH-LINK');
    storage.setRoute('/WH-LINK', { kind: 'body', body: ogg, contentType: 'audio/ogg' });
    await service.postReady('WH-LINK', storage.url('/WH-LINK'));
    await waitForDelivered(service, 'WH-LINK', 2);
    const link = receiver.accepted().find((each) => each.event?.type === 'recording.attached')?.event?.data.recording?.url as string;
    expect((await fetch(link)).status).toBe(200);

    const tampered = link.replace(/\.(\d+)\.([^./]+)$/, (_match, expiry: string, mac: string) => `.${Number(expiry) + 3600}.${mac}`);
    expect((await fetch(tampered)).status).toBe(403);
    const otherCall = link.replace(Buffer.from('WH-LINK').toString('base64url'), Buffer.from('WH-OTHER').toString('base64url'));
    expect((await fetch(otherCall)).status).toBe(403);
    const expired = createRecordingLinks({ secret: OUTBOUND_SECRET, baseUrl: () => service.url, ttlMs: 1_000 }).linkFor('WH-LINK', Date.now() - 60_000);
    const expiredAnswer = await fetch(expired);
    expect([expiredAnswer.status, ((await expiredAnswer.json()) as { error: string }).error]).toEqual([403, 'this recording link has expired']);

    // As RECORDING_RETENTION leaves a call whose file it deleted.
    const db = await openTestDatabase(env);
    await db.run("update calls set attachment_state = 'expired', attachment_reason = 'deleted by retention', recording_key = null where call_id = ?", ['WH-LINK']);
    await db.close();
    expect((await fetch(link)).status).toBe(410);
  });
});
