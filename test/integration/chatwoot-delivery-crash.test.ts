import fs from 'node:fs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startFakeChatwoot, type FakeChatwoot, type FakeMessage } from '../support/fake-chatwoot.ts';
import { startFakeWavoipStorage, type FakeWavoipStorage } from '../support/fake-wavoip-storage.ts';
import {
  makeDataDir,
  NO_POLLING,
  runCli,
  startChildService,
  startInProcessService,
  testEnvironment,
  waitFor,
  type ChildService,
  type InProcessService,
} from '../support/service-harness.ts';
import { databaseEnvironment, openTestDatabase, testDialect } from '../support/test-database.ts';
import { sha256 } from '../support/sha256.ts';

/** Chatwoot deliveries across a SIGKILL, two replicas, and a backfill of calls from before Chatwoot was configured. */
const ogg = fs.readFileSync(new URL('../fixtures/audio/call-pt-br-9s.ogg', import.meta.url));
const oggSha256 = sha256(ogg);

let storage: FakeWavoipStorage;
let chatwoot: FakeChatwoot;
const children: ChildService[] = [];
const services: InProcessService[] = [];

beforeAll(async () => {
  storage = await startFakeWavoipStorage();
});
afterEach(async () => {
  await Promise.all(children.splice(0).map((child) => child.kill('SIGKILL')));
  await Promise.all(services.splice(0).map((service) => service.stop()));
  await chatwoot?.close();
});
afterAll(async () => {
  await storage?.close();
});

function chatwootEnv(fake: FakeChatwoot): Record<string, string> {
  return { CHATWOOT_URL: fake.origin, CHATWOOT_API_TOKEN: fake.token, CHATWOOT_ACCOUNT_ID: String(fake.accountId), CHATWOOT_INBOX_ID: String(fake.whatsappInboxId) };
}

async function start(env: Record<string, string>): Promise<ChildService> {
  const child = await startChildService(env);
  children.push(child);
  return child;
}

/** Every delivery row, straight from the database the service shares with its restarts. */
async function deliveryRows(env: Record<string, string>) {
  const db = await openTestDatabase(env);
  try {
    return await db.all<{ call_id: string; kind: string; state: string }>('select call_id, kind, state from deliveries order by call_id, position');
  } finally {
    await db.close();
  }
}

function allMessages(fake: FakeChatwoot): FakeMessage[] {
  return fake.conversations().flatMap((conversation) => fake.messages(conversation.displayId));
}

const sourceIds = (fake: FakeChatwoot) => allMessages(fake).map((message) => message.sourceId).sort();

describe('Chatwoot deliveries across crashes, replicas and backfills', () => {
  it('SIGKILL while Chatwoot holds a committed summary’s answer: after restart, exactly one summary and one recording', async () => {
    chatwoot = await startFakeChatwoot();
    // Committed, then no answer for a minute: the service is killed in between.
    chatwoot.holdAnswerNext('POST /conversations/:id/messages', 60_000);
    const env = testEnvironment(storage.origin, await makeDataDir(), { ...NO_POLLING, JOB_LEASE: '1s', ...chatwootEnv(chatwoot) });
    const first = await start(env);
    for (const status of ['ACTIVE', 'ENDED']) {
      expect((await first.postWebhook({ type: 'CALL', whatsapp_call_id: 'CW-KILL', status, direction: 'INCOMING', caller: '5511987654321', duration: 9 })).status).toBe(200);
    }
    storage.setRoute('/CW-KILL', { kind: 'body', body: ogg, contentType: 'audio/ogg' });
    await first.postReady('CW-KILL', storage.url('/CW-KILL'));
    await waitFor(() => allMessages(chatwoot).length === 1, 'the summary to be committed in Chatwoot');
    await first.kill('SIGKILL');

    const second = await start(env);
    await waitFor(async () => {
      const rows = await deliveryRows(env);
      return rows.length === 2 && rows.every((row) => row.state === 'delivered');
    }, 'both deliveries made after restart');
    expect(sourceIds(chatwoot)).toEqual(['wavoip:CW-KILL:call', 'wavoip:CW-KILL:recording']);
    const audio = allMessages(chatwoot)[1]?.attachments[0];
    expect(sha256(audio!.bytes())).toBe(oggSha256);
    expect(second.logs().some((line) => line.msg.startsWith('[Chatwoot] ✅ Call summary posted to conversation'))).toBe(true);
  });

  it('backfills calls from before Chatwoot was configured with `redeliver --since`', async () => {
    chatwoot = await startFakeChatwoot();
    const env = testEnvironment(storage.origin, await makeDataDir(), NO_POLLING);
    const without = await startInProcessService(env);
    for (const callId of ['CW-OLD-1', 'CW-OLD-2']) {
      expect((await without.postWebhook({ type: 'CALL', whatsapp_call_id: callId, status: 'NOT_ANSWERED', direction: 'INCOMING', caller: '5511987654321' })).status).toBe(200);
    }
    await waitFor(async () => (await without.call('CW-OLD-2').catch(() => null))?.status === 'NOT_ANSWERED', 'the calls stored');
    await without.stop();

    const configured = { ...env, ...chatwootEnv(chatwoot) };
    const service = await startInProcessService(configured);
    services.push(service);
    expect(allMessages(chatwoot)).toEqual([]);
    const backfill = await runCli(configured, 'redeliver', '--since', '2020-01-01', '--url', service.url);
    expect([backfill.code, backfill.stdout]).toEqual([0, '2 deliveries added for calls first seen since 2020-01-01 (2 calls looked at).\n']);
    await waitFor(() => allMessages(chatwoot).length === 2, 'the backfilled messages');
    expect(sourceIds(chatwoot)).toEqual(['wavoip:CW-OLD-1:call', 'wavoip:CW-OLD-2:call']);
    expect(allMessages(chatwoot)[0]?.content).toMatch(/^📞 Incoming WhatsApp call — missed\n/);
    expect(chatwoot.contacts()).toHaveLength(1);
    expect(chatwoot.conversations()).toHaveLength(1);
  });

  it.skipIf(testDialect !== 'postgres')('two replicas on PostgreSQL: every message once, one contact and conversation per number', async () => {
    chatwoot = await startFakeChatwoot({ latencyMs: 5 });
    const settings = { ...NO_POLLING, ...databaseEnvironment(), ...chatwootEnv(chatwoot), DELIVERY_CONCURRENCY: '4' };
    const env = testEnvironment(storage.origin, await makeDataDir(), settings);
    const replicas = [await start(testEnvironment(storage.origin, await makeDataDir(), settings)), await start(testEnvironment(storage.origin, await makeDataDir(), settings))];
    const CALLS = 40;
    const callIds = Array.from({ length: CALLS }, (_, index) => `CW-FLEET-${String(index).padStart(2, '0')}`);
    // Ten numbers, four calls each, alternating replicas: the same new contact is delivered by both at once.
    await Promise.all(
      callIds.map(async (callId, index) => {
        const caller = `55119876500${String(index % 10).padStart(2, '0')}`;
        const response = await replicas[index % 2]!.postWebhook({ type: 'CALL', whatsapp_call_id: callId, status: 'NOT_ANSWERED', direction: 'INCOMING', caller });
        expect(response.status).toBe(200);
      }),
    );
    await waitFor(async () => {
      const rows = await deliveryRows(env);
      return rows.length === CALLS && rows.every((row) => row.state === 'delivered');
    }, `all ${CALLS} delivered`, 60_000);
    expect(sourceIds(chatwoot)).toEqual(callIds.map((callId) => `wavoip:${callId}:call`));
    expect(chatwoot.contacts()).toHaveLength(10);
    expect(chatwoot.conversations()).toHaveLength(10);
    const deliveredBy = replicas.map((replica) => replica.logs().filter((line) => String(line.msg).startsWith('[Chatwoot] ✅')).length);
    expect(deliveredBy[0]! + deliveredBy[1]!).toBe(CALLS);
    expect(deliveredBy.every((count) => count > 0)).toBe(true);
  }, 90_000);
});
