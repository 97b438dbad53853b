import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeWavoipStorage, type FakeWavoipStorage } from '../support/fake-wavoip-storage.ts';
import { NO_POLLING, makeDataDir, runCli, startInProcessService, testEnvironment, type CallView, type InProcessService } from '../support/service-harness.ts';

const ogg = fs.readFileSync(new URL('../fixtures/audio/call-pt-br-9s.ogg', import.meta.url));

let storage: FakeWavoipStorage;
let service: InProcessService;
let env: Record<string, string>;

beforeAll(async () => {
  storage = await startFakeWavoipStorage();
  // Retries an hour apart: nothing is fetched again unless the operator asks.
  env = testEnvironment(storage.origin, await makeDataDir(), { ...NO_POLLING, POLL_INITIAL_DELAY: '30m', POLL_MAX_DELAY: '1h' });
  service = await startInProcessService(env);
});

afterAll(async () => {
  await service?.stop();
  await storage?.close();
});

/** A READY whose download failed once (storage unreachable for it), now waiting for its next attempt. */
async function waitingCall(callId: string): Promise<CallView> {
  storage.setRoute(`/${callId}`, { kind: 'status', status: 503 });
  await service.postReady(callId, storage.url(`/${callId}`));
  let call: CallView | undefined;
  for (;;) {
    call = await service.call(callId);
    if ((call.attachment.attempts ?? 0) >= 1) return call;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function listed(callId: string): Promise<CallView['attachment']> {
  const page = (await (await service.api('/api/calls?state=pending&limit=200')).json()) as { calls: CallView[] };
  const call = page.calls.find((entry) => entry.whatsapp_call_id === callId);
  if (call === undefined) throw new Error(`${callId} is not listed`);
  return call.attachment;
}

describe('a call waiting for its next attempt', () => {
  it('shows in the list why it waits: attempts, next attempt, give-up time and last error', async () => {
    const call = await waitingCall('WAIT-LIST');
    const item = await listed('WAIT-LIST');
    expect(item).toMatchObject({ state: 'pending', attempts: 1, last_error: 'Recording request answered HTTP 503' });
    expect(item.next_attempt_at).toBe(call.attachment.next_attempt_at);
    expect(Date.parse(item.next_attempt_at as string)).toBeGreaterThan(Date.now() + 10 * 60_000);
    expect(item.give_up_at).toBe(call.attachment.give_up_at);

    const table = await runCli(env, 'calls', '--state', 'pending', '--url', service.url);
    const [header, ...rows] = table.stdout.trimEnd().split('\n');
    expect(header).toMatch(/^FIRST SEEN\s+CALL ID\s+DIRECTION\s+PEER\s+OUTCOME\s+ATTACHMENT\s+RECORD STATUS\s+ATTEMPTS\s+NEXT ATTEMPT\s+REASON \/ LAST ERROR$/);
    const row = rows.find((line) => line.includes('WAIT-LIST'));
    expect(row).toMatch(new RegExp(`WAIT-LIST\\s+-\\s+-\\s+answered\\s+pending\\s+READY\\s+1\\s+${item.next_attempt_at}\\s+Recording request answered HTTP 503$`));
  });

  it('is fetched now when retried (202), keeping its attempts and deadline', async () => {
    const before = await waitingCall('WAIT-NOW');
    storage.setRoute('/WAIT-NOW', { kind: 'body', body: ogg, contentType: 'audio/ogg' });
    const response = await service.api('/api/calls/WAIT-NOW/retry', { method: 'POST' });
    expect(response.status).toBe(202);
    const answer = (await response.json()) as CallView;
    expect(answer.attachment.state).toBe('pending');
    expect(Date.parse(answer.attachment.next_attempt_at as string)).toBeLessThanOrEqual(Date.now());
    expect(answer.attachment.give_up_at).toBe(before.attachment.give_up_at);
    expect((await service.waitForAttachment('WAIT-NOW')).attachment).toMatchObject({ state: 'attached', size: ogg.length });
    expect(storage.requests('/WAIT-NOW')).toBe(2);
    expect(service.logsFor('WAIT-NOW').some((line) => line.msg === '[WaVoIP Recording Webhook] Next attempt for call WAIT-NOW brought forward to now')).toBe(true);
  });

  it('the whole backlog is fetched now by one request, and the CLI says how many', async () => {
    const callIds = ['BACKLOG-1', 'BACKLOG-2', 'BACKLOG-3'];
    for (const callId of callIds) await waitingCall(callId);
    const pending = ((await (await service.api('/api/calls?state=pending&limit=200')).json()) as { calls: CallView[] }).calls;
    for (const call of pending) storage.setRoute(`/${call.whatsapp_call_id}`, { kind: 'body', body: ogg, contentType: 'audio/ogg' });
    const result = await runCli(env, 'retry', '--all-pending', '--url', service.url);
    expect(result).toMatchObject({ code: 0, stdout: `${pending.length} pending calls: fetching now.\n` });
    expect(pending.length).toBeGreaterThanOrEqual(callIds.length);
    for (const call of pending) expect((await service.waitForAttachment(call.whatsapp_call_id)).attachment.state).toBe('attached');
  });

  it('every failed call is tried again by one request', async () => {
    const short = await startInProcessService(testEnvironment(storage.origin, await makeDataDir(), { POLL_MAX_WAIT: '1s', POLL_INITIAL_DELAY: '100ms', POLL_MAX_DELAY: '200ms' }));
    try {
      for (const callId of ['FAILED-1', 'FAILED-2']) {
        storage.setRoute(`/${callId}`, { kind: 'status', status: 404 });
        await short.postReady(callId, storage.url(`/${callId}`));
        await short.waitForAttachment(callId, 'failed');
        storage.setRoute(`/${callId}`, { kind: 'body', body: ogg, contentType: 'audio/ogg' });
      }
      const response = await short.api('/api/calls/retry?state=failed', { method: 'POST' });
      expect(response.status).toBe(202);
      expect(await response.json()).toEqual({ state: 'failed', retried: 2 });
      for (const callId of ['FAILED-1', 'FAILED-2']) expect((await short.waitForAttachment(callId)).attachment.state).toBe('attached');
    } finally {
      await short.stop();
    }
  });

  it.each([
    ['', { error: 'state is required', field: 'state' }],
    ['?state=attached', { error: 'querystring/state must be equal to one of the allowed values', field: 'state' }],
    ['?state=pending&extra=1', { error: 'extra is not a parameter of this request', field: 'extra' }],
  ])('refuses a bulk retry with %j, naming the field', async (query, expected) => {
    const response = await service.api(`/api/calls/retry${query}`, { method: 'POST' });
    expect(response.status).toBe(400);
    expect(await response.json()).toEqual(expected);
  });

  it('the CLI refuses a call id together with --all-pending, and neither', async () => {
    for (const args of [['retry'], ['retry', 'X', '--all-pending'], ['retry', '--all-pending', '--all-failed']]) {
      const result = await runCli(env, ...args, '--url', service.url);
      expect(result.code).toBe(1);
      expect(result.stderr).toBe('wavoip-recordings: name one call id, or pass --all-pending or --all-failed\n');
    }
  });
});
