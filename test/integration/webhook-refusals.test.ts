import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeWavoipStorage, type FakeWavoipStorage } from '../support/fake-wavoip-storage.ts';
import { NO_POLLING, WEBHOOK_TOKEN, makeDataDir, startInProcessService, testEnvironment, waitFor, type InProcessService } from '../support/service-harness.ts';

let storage: FakeWavoipStorage;
let service: InProcessService;

beforeAll(async () => {
  storage = await startFakeWavoipStorage();
  service = await startInProcessService(testEnvironment(storage.origin, await makeDataDir(), NO_POLLING));
});

afterAll(async () => {
  await service?.stop();
  await storage?.close();
});

const SECRET_IN_BODY = 'body-secret-4242';

function refusalLines() {
  return service.logs().filter((line) => line.level === 40 && line.msg.startsWith('[WaVoIP Webhook] Refused'));
}

describe('a refused webhook', () => {
  it.each<[string, () => Promise<Response>, number, string]>([
    ['no token', () => service.postWebhook({ type: 'RECORD', whatsapp_call_id: 'r1' }, { token: null }), 401, 'no token'],
    ['a wrong token', () => service.postWebhook({ type: 'RECORD', whatsapp_call_id: 'r2' }, { token: 'not-the-token-123' }), 401, 'wrong token'],
    ['a body that is not JSON', () => service.postWebhook(`{"type":"RECORD","note":"${SECRET_IN_BODY}"`), 400, 'body is not valid JSON'],
    ['an empty body', () => service.postWebhook(''), 400, 'body is empty'],
    ['a missing whatsapp_call_id', () => service.postWebhook({ type: 'RECORD', note: SECRET_IN_BODY }), 400, 'RECORD event: whatsapp_call_id is required'],
    ['a content type that is not JSON', () => service.postWebhook(`type=RECORD&note=${SECRET_IN_BODY}`, { contentType: 'application/x-www-form-urlencoded' }), 415, 'content type is not application/json'],
  ])('with %s is logged at warn with its reason and the client address', async (_name, send, status, reason) => {
    const before = refusalLines().length;
    expect((await send()).status).toBe(status);
    await waitFor(() => refusalLines().length > before, 'the refusal to be logged');
    const line = refusalLines().at(-1);
    expect(line).toMatchObject({ client: '127.0.0.1', status, reason, msg: `[WaVoIP Webhook] Refused a webhook from 127.0.0.1 (${status}): ${reason}` });
  });

  it('never puts the token or the body in the log', async () => {
    // A service of its own (repeated refusals from one address are only counted): its refusals,
    // each with a secret to leak, logged before its log is read.
    const own = await startInProcessService(testEnvironment(storage.origin, await makeDataDir(), NO_POLLING));
    try {
      expect((await own.postWebhook({ type: 'RECORD', whatsapp_call_id: 'r7' }, { token: 'not-the-token-123' })).status).toBe(401);
      expect((await own.postWebhook(`{"type":"RECORD","note":"${SECRET_IN_BODY}"`)).status).toBe(400);
      expect((await own.postWebhook({ type: 'RECORD', note: SECRET_IN_BODY })).status).toBe(400);
      const refused = () => own.logs().filter((line) => line.msg.startsWith('[WaVoIP Webhook] Refused'));
      await waitFor(() => refused().length === 3, 'the three refusals to be logged');
      const log = JSON.stringify(own.logs());
      expect(log).not.toContain(WEBHOOK_TOKEN);
      expect(log).not.toContain('not-the-token-123');
      expect(log).not.toContain(SECRET_IN_BODY);
    } finally {
      await own.stop();
    }
  });

  it('repeated from one address is logged once, then counted, and the count logged', async () => {
    const own = await startInProcessService(testEnvironment(storage.origin, await makeDataDir(), NO_POLLING));
    const lines = () => own.logs().filter((line) => line.msg.startsWith('[WaVoIP Webhook] Refused'));
    try {
      for (let index = 0; index < 21; index++) {
        expect((await own.postWebhook({ type: 'RECORD', whatsapp_call_id: `again-${index}` }, { token: 'not-the-token-123' })).status).toBe(401);
      }
      // A refusal of another kind is logged at once: the repeats before it were not.
      expect((await own.postWebhook('{"a":'.repeat(40) + '1' + '}'.repeat(40))).status).toBe(400);
      await waitFor(() => lines().some((line) => line.reason === 'body is nested too deep'), 'the other refusal to be logged');
      expect(lines().map((line) => line.msg)).toEqual([
        '[WaVoIP Webhook] Refused a webhook from 127.0.0.1 (401): wrong token',
        '[WaVoIP Webhook] Refused a webhook from 127.0.0.1 (400): body is nested too deep',
      ]);
    } finally {
      await own.stop();
    }
    // Stopping logs the count still open.
    expect(lines().at(-1)).toMatchObject({ count: 20, msg: expect.stringMatching(/^\[WaVoIP Webhook\] Refused 20 more webhooks from 127\.0\.0\.1 in the last .*: wrong token$/) });
  });
});
