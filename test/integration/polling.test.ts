import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeWavoipStorage, type FakeWavoipStorage } from '../support/fake-wavoip-storage.ts';
import { NO_POLLING, makeDataDir, startInProcessService, testEnvironment, waitFor, type InProcessService } from '../support/service-harness.ts';
import { waitForEventsApplied } from '../support/test-database.ts';

const ogg = fs.readFileSync(new URL('../fixtures/audio/call-pt-br-9s.ogg', import.meta.url));

let storage: FakeWavoipStorage;
beforeAll(async () => {
  storage = await startFakeWavoipStorage();
});
afterAll(async () => {
  await storage?.close();
});

async function withService(
  overrides: Record<string, string>,
  run: (service: InProcessService, env: Record<string, string>) => Promise<void>,
): Promise<void> {
  const env = testEnvironment(storage.origin, await makeDataDir(), overrides);
  const service = await startInProcessService(env);
  try {
    await run(service, env);
  } finally {
    await service.stop();
  }
}

const endedCall = (callId: string) => [
  { type: 'CALL', action: 'CREATE', whatsapp_call_id: callId, status: 'ACTIVE', direction: 'INCOMING', caller: '5511911112222' },
  { type: 'CALL', action: 'UPDATE', whatsapp_call_id: callId, status: 'ENDED', duration: 42 },
];

describe('backup polling when no READY comes', () => {
  it('polls the storage URL after the call ended and attaches once it is there', () =>
    withService({ POLL_INITIAL_DELAY: '100ms', POLL_MAX_DELAY: '200ms' }, async (service) => {
      storage.setRoute('/POLL-OK', { kind: 'sequence', first: { kind: 'status', status: 404 }, times: 3, then: { kind: 'body', body: ogg, contentType: 'audio/ogg' } });
      // The end alone: with CREATE first, a slow machine could run CREATE's poll before ENDED
      // restarts the count from the call's end, and the attempts would not be numbered 1 to 4.
      const [, ended] = endedCall('POLL-OK');
      expect((await service.postWebhook(ended)).status).toBe(200);
      const call = await service.waitForAttachment('POLL-OK');
      expect(call.attachment.state).toBe('attached');
      expect(call.record_status).toBeNull();
      expect(storage.requests('/POLL-OK')).toBe(4);
      const attempts = service.logs().filter((line) => line.call_id === 'POLL-OK' && line.msg.startsWith('[WaVoIP Poll] Checking'));
      expect(attempts.map((line) => line.attempt)).toEqual([1, 2, 3, 4]);
      const notYet = service.logs().filter((line) => line.call_id === 'POLL-OK' && /not available yet \(.*404/.test(line.msg));
      expect(notYet.map((line) => line.level)).toEqual([30, 30, 30]);
    }));

  it('a storage it cannot reach is logged at warn as what failed, not as "not available yet"', async () => {
    const closed = await startFakeWavoipStorage();
    const origin = closed.origin;
    await closed.close();
    const env = testEnvironment(origin, await makeDataDir(), { POLL_INITIAL_DELAY: '100ms', POLL_MAX_DELAY: '200ms' });
    const service = await startInProcessService(env);
    try {
      const [, ended] = endedCall('POLL-UNREACHABLE');
      expect((await service.postWebhook(ended)).status).toBe(200);
      await waitFor(() => service.logsFor('POLL-UNREACHABLE').some((line) => line.msg.includes('next poll in')), 'a failed poll');
      const failed = service.logsFor('POLL-UNREACHABLE').find((line) => line.msg.includes('next poll in'));
      expect(failed).toMatchObject({
        level: 40,
        code: 'CONNECTION_REFUSED',
        reason: `could not reach ${new URL(origin).host}: connection refused`,
        msg: expect.stringMatching(/^\[WaVoIP Poll\] Could not check for the recording of call POLL-UNREACHABLE \(could not reach [\d.:]+: connection refused\); next poll in /),
      });
      expect(service.logs().some((line) => line.msg.includes('not available yet'))).toBe(false);
    } finally {
      await service.stop();
    }
  });

  it('gives up after POLL_MAX_WAIT and marks the message failed with the reason', () =>
    withService({ POLL_INITIAL_DELAY: '100ms', POLL_MAX_DELAY: '300ms', POLL_MAX_WAIT: '1500ms' }, async (service) => {
      for (const event of endedCall('POLL-GIVE-UP')) await service.postWebhook(event);
      const call = await service.waitForAttachment('POLL-GIVE-UP');
      expect(call.attachment.state).toBe('failed');
      expect(call.attachment.reason).toMatch(/^recording not available in time: gave up after 1500ms/);
      expect(call.attachment.reason).toMatch(/404/);
      expect(storage.requests('/POLL-GIVE-UP')).toBeGreaterThanOrEqual(3);
      expect(service.logs().some((line) => line.call_id === 'POLL-GIVE-UP' && line.level === 50 && /not available in time/.test(line.msg))).toBe(true);
    }));

  it('starts from the end of the call, or from when it was first seen while no end is known', () =>
    withService({ ...NO_POLLING }, async (service) => {
      const [created, ended] = endedCall('POLL-START');
      await service.postWebhook(created);
      await waitFor(async () => (await service.api('/api/calls/POLL-START')).status === 200, 'call created');
      const ringing = (await service.call('POLL-START')) as unknown as { first_seen_at: string; attachment: { next_attempt_at: string; give_up_at: string } };
      expect(Date.parse(ringing.attachment.next_attempt_at) - Date.parse(ringing.first_seen_at)).toBe(3_600_000);
      expect(Date.parse(ringing.attachment.give_up_at) - Date.parse(ringing.first_seen_at)).toBe(4 * 3_600_000);

      await service.postWebhook(ended);
      await waitFor(async () => (await service.call('POLL-START')).status === 'ENDED', 'call ended');
      const over = (await service.call('POLL-START')) as unknown as { ended_at: string; attachment: { next_attempt_at: string; give_up_at: string } };
      expect(Date.parse(over.attachment.next_attempt_at) - Date.parse(over.ended_at)).toBe(3_600_000);
      expect(Date.parse(over.attachment.give_up_at) - Date.parse(over.ended_at)).toBe(4 * 3_600_000);
      expect(storage.requests('/POLL-START')).toBe(0);
    }));

  it('ends the polling at once when READY arrives, without waiting for any timer', () =>
    // With an hour's lease the scheduler's own timer sleeps an hour: only the wake-up on new work can start this download.
    withService({ ...NO_POLLING, JOB_LEASE: '1h' }, async (service) => {
      storage.setRoute('/POLL-THEN-READY', { kind: 'body', body: ogg, contentType: 'audio/ogg' });
      for (const event of endedCall('POLL-THEN-READY')) await service.postWebhook(event);
      await service.postWebhook({ type: 'RECORD', whatsapp_call_id: 'POLL-THEN-READY', record_status: 'READY' });
      const call = await service.waitForAttachment('POLL-THEN-READY');
      expect(call.attachment.state).toBe('attached');
      expect(storage.requests('/POLL-THEN-READY')).toBe(1);
      expect((call.attachment as Record<string, unknown>).next_attempt_at).toBeUndefined();
    }));

  it.each([
    ['EMPTY_RECORDING', 'empty'],
    ['DISABLED', 'disabled'],
  ])('ends the polling at once on %s', (status, state) =>
    withService({ POLL_INITIAL_DELAY: '100ms', POLL_MAX_DELAY: '100ms' }, async (service) => {
      const callId = `POLL-${status}`;
      for (const event of endedCall(callId)) await service.postWebhook(event);
      await waitFor(() => storage.requests(`/${callId}`) >= 2, 'two polls');
      await service.postWebhook({ type: 'RECORD', whatsapp_call_id: callId, record_status: status });
      const call = await service.waitForAttachment(callId, state);
      expect((call.attachment as Record<string, unknown>).next_attempt_at).toBeUndefined();
    }));

  it('does not poll for a call that ended without ever connecting', () =>
    withService({ POLL_INITIAL_DELAY: '100ms', POLL_MAX_DELAY: '100ms' }, async (service) => {
      await service.postWebhook({ type: 'CALL', whatsapp_call_id: 'MISSED', status: 'INCOMING_RING', direction: 'INCOMING', duration: 0 });
      await service.postWebhook({ type: 'CALL', whatsapp_call_id: 'MISSED', status: 'NOT_ANSWERED', duration: 0 });
      const call = await service.waitForAttachment('MISSED', 'none');
      expect((call.attachment as Record<string, unknown>).next_attempt_at).toBeUndefined();
      // A later RECORD event still wins over `none`.
      storage.setRoute('/MISSED', { kind: 'body', body: ogg, contentType: 'audio/ogg' });
      await service.postWebhook({ type: 'RECORD', whatsapp_call_id: 'MISSED', record_status: 'READY' });
      expect((await service.waitForAttachment('MISSED', 'attached')).attachment.sha256).toMatch(/^[0-9a-f]{64}$/);
    }));

  it('downloads a READY recording before polls that fell due while every download slot was busy', () =>
    withService({ DOWNLOAD_CONCURRENCY: '1', POLL_INITIAL_DELAY: '100ms', POLL_MAX_DELAY: '100ms' }, async (service, env) => {
      let release!: () => void;
      const released = new Promise<void>((resolve) => (release = resolve));
      storage.setRoute('/SLOT-HOLDER', { kind: 'held', until: released, then: { kind: 'body', body: ogg, contentType: 'audio/ogg' } });
      await service.postWebhook({ type: 'RECORD', whatsapp_call_id: 'SLOT-HOLDER', record_status: 'READY' });
      await waitFor(() => storage.requests('/SLOT-HOLDER') === 1, 'the only download slot to be taken');

      const overdue = ['OVERDUE-1', 'OVERDUE-2', 'OVERDUE-3'];
      for (const callId of overdue) for (const event of endedCall(callId)) await service.postWebhook(event);
      await waitForEventsApplied(env);
      const dueAt = async (callId: string) => Date.parse(((await service.call(callId)).attachment as { next_attempt_at: string }).next_attempt_at);
      await waitFor(async () => (await Promise.all(overdue.map(dueAt))).every((at) => at < Date.now()), 'the polls to fall due');

      storage.setRoute('/READY-LATE', { kind: 'body', body: ogg, contentType: 'audio/ogg' });
      await service.postWebhook({ type: 'RECORD', whatsapp_call_id: 'READY-LATE', record_status: 'READY' });
      await waitForEventsApplied(env);
      release();
      await service.waitForAttachment('READY-LATE', 'attached');
      const requested = storage.requestedPaths();
      expect(requested.slice(requested.indexOf('/SLOT-HOLDER') + 1)[0]).toBe('/READY-LATE');
      await waitFor(() => overdue.every((callId) => storage.requests(`/${callId}`) >= 1), 'the polls to run next');
    }));

  it('takes READY before the call ended, and RECORD before CALL', () =>
    withService({ ...NO_POLLING }, async (service, env) => {
      storage.setRoute('/OUT-OF-ORDER', { kind: 'body', body: ogg, contentType: 'audio/ogg' });
      await service.postWebhook({ type: 'RECORD', whatsapp_call_id: 'OUT-OF-ORDER', record_status: 'READY' });
      await service.waitForAttachment('OUT-OF-ORDER', 'attached');
      await service.postWebhook({ type: 'RECORD', whatsapp_call_id: 'OUT-OF-ORDER', record_status: 'MIXING' });
      for (const event of endedCall('OUT-OF-ORDER')) await service.postWebhook(event);
      await waitForEventsApplied(env);
      const call = await service.call('OUT-OF-ORDER');
      expect(call).toMatchObject({ status: 'ENDED', record_status: 'READY', caller: '5511911112222', attachment: { state: 'attached' } });
      expect(call.events.map((event) => event.payload.status ?? event.payload.record_status)).toEqual(['READY', 'MIXING', 'ACTIVE', 'ENDED']);
      expect(storage.requests('/OUT-OF-ORDER')).toBe(1);
    }));
});
