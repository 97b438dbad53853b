import fs from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startFakeChatwoot, type FakeChatwoot, type FakeMessage } from '../support/fake-chatwoot.ts';
import { startFakeWavoipStorage, type FakeWavoipStorage } from '../support/fake-wavoip-storage.ts';
import { S3RVER_CREDENTIALS, startS3rver } from '../support/s3rver.ts';
import { makeDataDir, NO_POLLING, startInProcessService, testEnvironment, waitFor, type InProcessService, type DeliveryView } from '../support/service-harness.ts';
import { sha256 } from '../support/sha256.ts';

const ogg = fs.readFileSync(new URL('../fixtures/audio/call-pt-br-9s.ogg', import.meta.url));
const oggSha256 = sha256(ogg);
const FAST_RETRIES = { deliveryRetry: { initialDelayMs: 50, maxDelayMs: 200, probeIntervalMs: 200 } };
const PEER = '+5511987654321';

let storage: FakeWavoipStorage;
const services: InProcessService[] = [];
const chatwoots: FakeChatwoot[] = [];

beforeAll(async () => {
  storage = await startFakeWavoipStorage();
});
afterEach(async () => {
  await Promise.all(services.splice(0).map((service) => service.stop()));
  await Promise.all(chatwoots.splice(0).map((chatwoot) => chatwoot.close()));
});
afterAll(async () => {
  await storage?.close();
});

/** A fake Chatwoot, and the service delivering to it (its WhatsApp inbox by default: private notes are safe there). */
async function setUp(options: { env?: Record<string, string>; inbox?: 'api' | 'whatsapp'; chatwoot?: FakeChatwoot } = {}) {
  const chatwoot = options.chatwoot ?? (await startFakeChatwoot());
  if (!options.chatwoot) chatwoots.push(chatwoot);
  const env = testEnvironment(storage.origin, await makeDataDir(), {
    ...NO_POLLING,
    CHATWOOT_URL: chatwoot.origin,
    CHATWOOT_API_TOKEN: chatwoot.token,
    CHATWOOT_ACCOUNT_ID: String(chatwoot.accountId),
    CHATWOOT_INBOX_ID: String(options.inbox === 'api' ? chatwoot.apiInboxId : chatwoot.whatsappInboxId),
    ...options.env,
  });
  const service = await startInProcessService(env, FAST_RETRIES);
  services.push(service);
  return { chatwoot, service, env };
}

async function endCall(service: InProcessService, callId: string, { direction = 'INCOMING', peer = '5511987654321' } = {}): Promise<void> {
  const parties = direction === 'INCOMING' ? { caller: peer, receiver: '5511933334444' } : { caller: '5511933334444', receiver: peer };
  for (const status of ['ACTIVE', 'ENDED']) {
    const response = await service.postWebhook({ type: 'CALL', whatsapp_call_id: callId, status, direction, ...parties, duration: status === 'ENDED' ? 9 : 0 });
    expect(response.status).toBe(200);
  }
}

async function attachRecording(service: InProcessService, callId: string): Promise<void> {
  storage.setRoute(`/${callId}`, { kind: 'body', body: ogg, contentType: 'audio/ogg' });
  await service.postReady(callId, storage.url(`/${callId}`));
}

async function deliveriesOf(service: InProcessService, callId: string): Promise<DeliveryView[]> {
  const response = await service.api(`/api/calls/${encodeURIComponent(callId)}`);
  return response.status === 404 ? [] : ((await response.json()) as { deliveries: DeliveryView[] }).deliveries;
}

async function waitForDelivered(service: InProcessService, callId: string, count: number): Promise<DeliveryView[]> {
  let last: DeliveryView[] = [];
  await waitFor(async () => {
    last = await deliveriesOf(service, callId);
    return last.filter((delivery) => delivery.state === 'delivered').length >= count;
  }, `${count} deliveries of ${callId} delivered (last: ${JSON.stringify(last)})`);
  return last;
}

/** Every message posted for a call, in order, from any conversation. */
function messagesFor(chatwoot: FakeChatwoot, callId: string): FakeMessage[] {
  return chatwoot.conversations().flatMap((conversation) => chatwoot.messages(conversation.displayId)).filter((message) => message.sourceId?.startsWith(`wavoip:${callId}:`));
}

describe('delivering calls to Chatwoot', () => {
  it('posts a summary, then the audio, as private notes in the contact’s conversation; ids kept on the deliveries', async () => {
    const { chatwoot, service } = await setUp();
    await endCall(service, 'CW-ATTACHED');
    await attachRecording(service, 'CW-ATTACHED');
    const deliveries = await waitForDelivered(service, 'CW-ATTACHED', 2);

    const [contact, ...otherContacts] = chatwoot.contacts();
    expect(otherContacts).toEqual([]);
    expect(contact?.phoneNumber).toBe(PEER);
    const [conversation, ...otherConversations] = chatwoot.conversations();
    expect(otherConversations).toEqual([]);
    expect(conversation).toMatchObject({ contactId: contact?.id, inboxId: chatwoot.whatsappInboxId });
    const [summary, recording, ...more] = chatwoot.messages(conversation!.displayId);
    expect(more).toEqual([]);
    expect(summary).toMatchObject({ private: true, messageType: 'outgoing', sourceId: 'wavoip:CW-ATTACHED:call', attachments: [] });
    expect(summary?.content).toMatch(/^📞 Incoming WhatsApp call — answered\nFrom: \+5511987654321\nDuration: 00:09\nStarted: .+ UTC\nRecording: (on its way|attached below)$/);
    expect(recording).toMatchObject({ private: true, sourceId: 'wavoip:CW-ATTACHED:recording', content: '🎙️ Recording of the call with +5511987654321 (00:09)' });
    const [audio] = recording!.attachments;
    expect(audio).toMatchObject({ fileType: 'audio', contentType: 'audio/ogg', fileName: expect.stringMatching(/^call-\d{8}-\d{6}-5511987654321\.ogg$/) });
    expect(sha256(audio!.bytes())).toBe(oggSha256);

    expect(deliveries.map((delivery) => [delivery.destination, delivery.kind, delivery.state, delivery.attempts])).toEqual([
      [`chatwoot:${chatwoot.accountId}`, 'call', 'delivered', 1],
      [`chatwoot:${chatwoot.accountId}`, 'recording', 'delivered', 1],
    ]);
    expect(deliveries[1]?.external_ids).toEqual({ contact_id: contact?.id, conversation_id: conversation?.displayId, message_id: recording?.id });
    const logged = service.logs().map((line) => line.msg);
    expect(logged).toContain(`[Chatwoot] ✅ Call summary posted to conversation ${conversation?.displayId}`);
    expect(logged).toContain(`[Chatwoot] ✅ Recording posted to conversation ${conversation?.displayId}`);
    expect(JSON.stringify(service.logs())).not.toContain(chatwoot.token);
  });

  it('in api mode on an API inbox posts incoming or outgoing by the call’s direction, not private, in pt-BR when asked', async () => {
    const { chatwoot, service } = await setUp({ inbox: 'api', env: { CHATWOOT_MESSAGE_MODE: 'api', CHATWOOT_LANGUAGE: 'pt-BR' } });
    await endCall(service, 'CW-IN', { direction: 'INCOMING', peer: '5511911112222' });
    await endCall(service, 'CW-OUT', { direction: 'OUTCOMING', peer: '5511911113333' });
    await waitForDelivered(service, 'CW-IN', 1);
    await waitForDelivered(service, 'CW-OUT', 1);
    expect(messagesFor(chatwoot, 'CW-IN')).toMatchObject([{ messageType: 'incoming', private: false, content: expect.stringMatching(/^📞 Chamada de WhatsApp recebida — atendida\nDe: \+5511911112222/) }]);
    expect(messagesFor(chatwoot, 'CW-OUT')).toMatchObject([{ messageType: 'outgoing', private: false, content: expect.stringMatching(/^📞 Chamada de WhatsApp feita — atendida\nPara: \+5511911113333/) }]);
  });

  it('in api mode on a WhatsApp inbox posts nothing: blocked with the reason, /readyz degraded', async () => {
    const { chatwoot, service } = await setUp({ inbox: 'whatsapp', env: { CHATWOOT_MESSAGE_MODE: 'api' } });
    // Outgoing: the message type Chatwoot would send on to the customer through WhatsApp.
    await endCall(service, 'CW-WRONG-INBOX', { direction: 'OUTCOMING' });
    await waitFor(async () => (await deliveriesOf(service, 'CW-WRONG-INBOX'))[0]?.last_error != null, 'the delivery to be blocked');
    const [delivery] = await deliveriesOf(service, 'CW-WRONG-INBOX');
    expect(delivery).toMatchObject({ state: 'pending', attempts: 0, last_error: expect.stringMatching(/Channel::Whatsapp inbox.*CHATWOOT_MESSAGE_MODE=private/) });
    expect(await (await fetch(`${service.url}/readyz`)).json()).toMatchObject({ status: 'degraded', deliveries: 'blocked' });
    expect(chatwoot.requests('POST /conversations/:id/messages')).toBe(0);
    expect(chatwoot.contacts()).toEqual([]);
  });

  it('finds the contact under the other Brazilian form, and reuses their latest conversation in the inbox', async () => {
    const chatwoot = await startFakeChatwoot();
    chatwoots.push(chatwoot);
    const old = chatwoot.seedContact({ phone: '+551187654321', inboxId: chatwoot.whatsappInboxId });
    chatwoot.seedConversation(old.id, chatwoot.whatsappInboxId);
    const latest = chatwoot.seedConversation(old.id, chatwoot.whatsappInboxId);
    chatwoot.seedConversation(old.id, chatwoot.apiInboxId); // newer, but another inbox
    const { service } = await setUp({ chatwoot });
    await endCall(service, 'CW-NINTH-DIGIT', { peer: '5511987654321' });
    await waitForDelivered(service, 'CW-NINTH-DIGIT', 1);
    expect(chatwoot.contacts().map((contact) => contact.id)).toEqual([old.id]);
    expect(chatwoot.conversations()).toHaveLength(3);
    expect(chatwoot.messages(latest).map((message) => message.sourceId)).toEqual(['wavoip:CW-NINTH-DIGIT:call']);
  });

  it('two calls of one new contact ending at once make one contact and one conversation', async () => {
    const { chatwoot, service } = await setUp({ env: { DELIVERY_CONCURRENCY: '8' } });
    await Promise.all(['CW-TWIN-1', 'CW-TWIN-2', 'CW-TWIN-3'].map((callId) => endCall(service, callId, { peer: '5521977778888' })));
    for (const callId of ['CW-TWIN-1', 'CW-TWIN-2', 'CW-TWIN-3']) await waitForDelivered(service, callId, 1);
    expect(chatwoot.contacts().map((contact) => contact.phoneNumber)).toEqual(['+5521977778888']);
    expect(chatwoot.conversations()).toHaveLength(1);
    expect(chatwoot.messages(chatwoot.conversations()[0]!.displayId)).toHaveLength(3);
  });

  it('tells a recording that failed for good, with the retry link; a retry that succeeds posts the recording', async () => {
    const { chatwoot, service } = await setUp({ env: { PUBLIC_URL: 'https://rec.example.com' } });
    await endCall(service, 'CW-FAILED');
    storage.setRoute('/CW-FAILED', { kind: 'status', status: 403 });
    await service.postReady('CW-FAILED', storage.url('/CW-FAILED'));
    await waitForDelivered(service, 'CW-FAILED', 2);
    const [, failure] = messagesFor(chatwoot, 'CW-FAILED');
    expect(failure?.sourceId).toBe('wavoip:CW-FAILED:recording_unavailable');
    expect(failure?.content).toMatch(/^⚠️ The recording of this call could not be fetched: .*403/);
    expect(failure?.content).toContain('To try again: POST https://rec.example.com/api/calls/CW-FAILED/retry (with the API token), or on the server: npx wavoip-recordings retry CW-FAILED');

    storage.setRoute('/CW-FAILED', { kind: 'body', body: ogg, contentType: 'audio/ogg' });
    expect((await service.api('/api/calls/CW-FAILED/retry', { method: 'POST' })).status).toBe(202);
    await waitForDelivered(service, 'CW-FAILED', 3);
    const messages = messagesFor(chatwoot, 'CW-FAILED');
    expect(messages.map((message) => message.sourceId)).toEqual(['wavoip:CW-FAILED:call', 'wavoip:CW-FAILED:recording_unavailable', 'wavoip:CW-FAILED:recording']);
    expect(messages[2]?.attachments[0]?.fileType).toBe('audio');
  });

  it('adds a short note when no recording came after a summary said it was on its way, and nothing when the summary said so', async () => {
    const { chatwoot, service } = await setUp();
    await endCall(service, 'CW-DISABLED-LATE');
    await waitForDelivered(service, 'CW-DISABLED-LATE', 1);
    await service.postWebhook({ type: 'RECORD', whatsapp_call_id: 'CW-DISABLED-LATE', record_status: 'DISABLED' });
    await waitForDelivered(service, 'CW-DISABLED-LATE', 2);
    expect(messagesFor(chatwoot, 'CW-DISABLED-LATE').map((message) => message.content?.split('\n').at(-1))).toEqual([
      'Recording: on its way',
      'No recording: recording is off on the device',
    ]);

    // The recording's end comes before the call's: the call is over, and its summary says why there is no recording.
    await service.postWebhook({ type: 'CALL', whatsapp_call_id: 'CW-EMPTY-FIRST', status: 'ACTIVE', direction: 'INCOMING', caller: '5511987654321', receiver: '5511933334444' });
    await service.postWebhook({ type: 'RECORD', whatsapp_call_id: 'CW-EMPTY-FIRST', record_status: 'EMPTY_RECORDING' });
    const deliveries = await waitForDelivered(service, 'CW-EMPTY-FIRST', 2);
    expect(messagesFor(chatwoot, 'CW-EMPTY-FIRST').map((message) => message.content?.split('\n').at(-1))).toEqual(['No recording: the call was too short to record']);
    expect(deliveries[1]?.external_ids).not.toHaveProperty('message_id');
  });

  it('finds or makes the contact and conversation again when Chatwoot lost the ones an earlier delivery used', async () => {
    const { chatwoot, service } = await setUp();
    await endCall(service, 'CW-GONE');
    await waitForDelivered(service, 'CW-GONE', 1);
    const [first] = chatwoot.conversations();
    chatwoot.deleteConversation(first!);
    await attachRecording(service, 'CW-GONE');
    const deliveries = await waitForDelivered(service, 'CW-GONE', 2);
    const [second, ...others] = chatwoot.conversations();
    expect(others).toEqual([]);
    expect(second?.id).not.toBe(first?.id);
    expect(chatwoot.messages(second!).map((message) => message.sourceId)).toEqual(['wavoip:CW-GONE:recording']);
    expect(deliveries[1]).toMatchObject({ attempts: 1, external_ids: { conversation_id: second?.displayId, contact_id: first?.contactId } });
  });

  it('streams a recording kept in S3 through a temp file, deleted after', async () => {
    const s3 = await startS3rver(['recordings']);
    const saved = { id: process.env.AWS_ACCESS_KEY_ID, secret: process.env.AWS_SECRET_ACCESS_KEY };
    process.env.AWS_ACCESS_KEY_ID = S3RVER_CREDENTIALS.accessKeyId;
    process.env.AWS_SECRET_ACCESS_KEY = S3RVER_CREDENTIALS.secretAccessKey;
    try {
      const { chatwoot, service } = await setUp({ env: { RECORDINGS_STORAGE: 's3://recordings/calls', S3_ENDPOINT: s3.endpoint, S3_FORCE_PATH_STYLE: 'true', S3_REGION: 'us-east-1' } });
      await endCall(service, 'CW-S3');
      await attachRecording(service, 'CW-S3');
      await waitForDelivered(service, 'CW-S3', 2);
      const audio = messagesFor(chatwoot, 'CW-S3')[1]?.attachments[0];
      expect(audio?.fileType).toBe('audio');
      expect(sha256(audio!.bytes())).toBe(oggSha256);
      const temp = fs.readdirSync(path.join(service.dataDir, 'tmp'), { recursive: true, withFileTypes: true }).filter((entry) => entry.isFile() && entry.name.startsWith('chatwoot-'));
      expect(temp).toEqual([]);
      await service.stop();
      services.splice(services.indexOf(service), 1);
    } finally {
      await s3.dispose();
      for (const [name, value] of [['AWS_ACCESS_KEY_ID', saved.id], ['AWS_SECRET_ACCESS_KEY', saved.secret]] as const) {
        if (value === undefined) delete process.env[name];
        else process.env[name] = value;
      }
    }
  });

  it.each([
    ['500', (chatwoot: FakeChatwoot) => chatwoot.failNext('POST /conversations/:id/messages', 1, 500)],
    ['429 without Retry-After', (chatwoot: FakeChatwoot) => chatwoot.failNext('POST /contacts/filter', 2, 429, { body: 'Retry later\n' })],
    ['a connection reset', (chatwoot: FakeChatwoot) => chatwoot.resetNext('POST /conversations/:id/messages')],
    ['a committed message whose answer is lost', (chatwoot: FakeChatwoot) => chatwoot.loseAnswerNext('POST /conversations/:id/messages')],
    ['a slow answer', (chatwoot: FakeChatwoot) => chatwoot.delayNext('POST /conversations/:id/messages', 1_500)],
  ])('after %s, the summary is posted exactly once', async (_fault, inject) => {
    const chatwoot = await startFakeChatwoot();
    chatwoots.push(chatwoot);
    inject(chatwoot);
    const { service } = await setUp({ chatwoot });
    await endCall(service, 'CW-FAULT');
    await waitForDelivered(service, 'CW-FAULT', 1);
    expect(messagesFor(chatwoot, 'CW-FAULT').map((message) => message.sourceId)).toEqual(['wavoip:CW-FAULT:call']);
  });

  it('a wrong token blocks the destination (the token never shown); restarted with the right one, it resumes', async () => {
    const chatwoot = await startFakeChatwoot();
    chatwoots.push(chatwoot);
    const wrong = 'wrong-token-0123456789';
    const { service, env } = await setUp({ chatwoot, env: { CHATWOOT_API_TOKEN: wrong } });
    await endCall(service, 'CW-TOKEN');
    await waitFor(async () => (await deliveriesOf(service, 'CW-TOKEN'))[0]?.last_error != null, 'the delivery to be blocked');
    expect((await deliveriesOf(service, 'CW-TOKEN'))[0]?.last_error).toMatch(/HTTP 401.*CHATWOOT_API_TOKEN is not a valid access token/);
    const destinations = await (await service.api('/api/destinations')).text();
    expect(destinations).toMatch(/blocked/);
    for (const text of [destinations, JSON.stringify(service.logs()), await (await fetch(`${service.url}/metrics`)).text()]) expect(text).not.toContain(wrong);
    await service.stop();
    services.splice(services.indexOf(service), 1);

    const fixed = await startInProcessService({ ...env, CHATWOOT_API_TOKEN: chatwoot.token }, FAST_RETRIES);
    services.push(fixed);
    await waitForDelivered(fixed, 'CW-TOKEN', 1);
    expect(messagesFor(chatwoot, 'CW-TOKEN')).toHaveLength(1);
    expect(await (await fetch(`${fixed.url}/readyz`)).json()).toMatchObject({ status: 'ready', deliveries: 'ok' });
  });
});
