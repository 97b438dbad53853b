import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeWavoipStorage, type FakeWavoipStorage } from '../support/fake-wavoip-storage.ts';
import {
  NO_POLLING,
  WEBHOOK_TOKEN,
  makeDataDir,
  startInProcessService,
  testEnvironment,
  waitFor,
  type InProcessService,
} from '../support/service-harness.ts';
import { openTestDatabase, testDialect, waitForEventsApplied, type TestDatabase } from '../support/test-database.ts';

const payloads = JSON.parse(fs.readFileSync(new URL('../fixtures/wavoip-payloads.json', import.meta.url), 'utf8')) as Record<
  string,
  Record<string, unknown>
>;

let storage: FakeWavoipStorage;
let service: InProcessService;
let env: Record<string, string>;

beforeAll(async () => {
  storage = await startFakeWavoipStorage();
  env = testEnvironment(storage.origin, await makeDataDir(), NO_POLLING);
  service = await startInProcessService(env);
});

afterAll(async () => {
  await service?.stop();
  await storage?.close();
});

/** Reads the service's database from a connection of its own, opened for this one query. */
async function readDatabase<T>(query: (db: TestDatabase) => Promise<T>): Promise<T> {
  const db = await openTestDatabase(env);
  try {
    return await query(db);
  } finally {
    await db.close();
  }
}

const countEvents = () => readDatabase(async (db) => (await db.get<{ n: number }>('select count(*) as n from events'))?.n);

describe('POST /webhooks/wavoip', () => {
  it('acknowledges only once the raw event is committed, with its event id', async () => {
    const response = await service.postWebhook({ ...payloads.call_create_live, whatsapp_call_id: 'ACK-1' });
    expect(response.status).toBe(200);
    const body = (await response.json()) as { received: boolean; event_id: string };
    expect(body.received).toBe(true);
    // Read straight from the database, from another connection: the row is already durable.
    const row = await readDatabase((db) =>
      db.get<{ call_id: string; type: string; payload: string }>('select call_id, type, payload from events where event_id = ?', [body.event_id]),
    );
    expect(row).toMatchObject({ call_id: 'ACK-1', type: 'CALL' });
    expect(JSON.parse(row?.payload ?? '{}')).toMatchObject({ transport: 'WSS', is_contact: true });
  });

  it('keeps the raw body exactly as received, duplicate keys and big numbers included', async () => {
    const raw = '{"type":"CALL","whatsapp_call_id":"RAW-1","type":"HUMANIZED","status":"ENDED","big":123456789012345678901234567890}';
    const response = await service.postWebhook(raw);
    expect(response.status).toBe(200);
    const { event_id } = (await response.json()) as { event_id: string };
    expect(await readDatabase((db) => db.get('select payload from events where event_id = ?', [event_id]))).toEqual({ payload: raw });
  });

  const payloadNames = Object.keys(payloads).filter((name) => !name.startsWith('_'));
  it('has every payload of the fixture file to accept (none lost on reading it)', () => {
    expect(payloadNames).toHaveLength(11);
  });

  it.each(payloadNames)('accepts the %s payload', async (name) => {
    const response = await service.postWebhook(payloads[name]);
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({ received: true, event_id: expect.any(String) });
  });

  it('keeps a numeric and a string call id as the same text key', async () => {
    await service.postWebhook({ type: 'CALL', action: 'CREATE', whatsapp_call_id: 987654, status: 'ACTIVE', direction: 'INCOMING' });
    await service.postWebhook({ type: 'RECORD', whatsapp_call_id: '987654', record_status: 'RECORDING' });
    await waitForEventsApplied(env);
    const call = await service.call('987654');
    expect(call.events).toHaveLength(2);
    expect(call).toMatchObject({ whatsapp_call_id: '987654', status: 'ACTIVE', direction: 'incoming', direction_raw: 'INCOMING', record_status: 'RECORDING' });
  });

  it('reads a CALL whose type was overwritten by HUMANIZED as a CALL', async () => {
    await service.postWebhook({ ...payloads.call_type_overwritten, whatsapp_call_id: 'HUMANIZED-1' });
    await waitFor(async () => (await service.api('/api/calls/HUMANIZED-1')).status === 200, 'call HUMANIZED-1');
    expect(await service.call('HUMANIZED-1')).toMatchObject({
      caller: '5511911112222',
      receiver: '5511933334444',
      status: 'ENDED',
      record_status: 'MIXING',
      duration: 45,
    });
  });

  it('reads the RECORD status from `status` when `record_status` is missing', async () => {
    await service.postWebhook({ type: 'RECORD', action: 'UPDATE', whatsapp_call_id: 'STATUS-FIELD', status: 'EMPTY_RECORDING' });
    const call = await service.waitForAttachment('STATUS-FIELD', 'empty');
    expect(call.record_status).toBe('EMPTY_RECORDING');
  });

  it('stores, acknowledges and ignores unknown event types and unknown statuses', async () => {
    const unknownType = await service.postWebhook({ type: 'PRESENCE', foo: 1 });
    expect(unknownType.status).toBe(200);
    const { event_id } = (await unknownType.json()) as { event_id: string };
    expect(await readDatabase((db) => db.get('select type from events where event_id = ?', [event_id]))).toEqual({ type: 'UNKNOWN' });

    const unknownStatus = await service.postWebhook({ type: 'CALL', whatsapp_call_id: 'ODD-STATUS', status: 'TELEPORTING', record_status: 'WHATEVER' });
    expect(unknownStatus.status).toBe(200);
    await waitFor(async () => (await service.api('/api/calls/ODD-STATUS')).status === 200, 'call ODD-STATUS');
    expect(await service.call('ODD-STATUS')).toMatchObject({ status: 'TELEPORTING', record_status: 'WHATEVER', attachment: { state: 'pending' } });
  });

  it('updates the device on DEVICE events', async () => {
    await service.postWebhook({ type: 'DEVICE', action: 'UPDATE', id_session: 4242, phone: '5511900000000', status: 'open' });
    await service.postWebhook({ type: 'DEVICE', action: 'UPDATE', id_session: 4242, status: 'close' });
    const deviceStatus = async () =>
      (await readDatabase((db) => db.get<{ status: string }>('select status from devices where device_id = ?', ['4242'])))?.status;
    await waitFor(async () => (await deviceStatus()) === 'close', 'device 4242 closed');
    expect(await readDatabase((db) => db.get('select phone, status from devices where device_id = ?', ['4242']))).toEqual({
      phone: '5511900000000',
      status: 'close',
    });
  });

  it('gives the same result when one event is delivered many times at once', async () => {
    const event = { type: 'CALL', whatsapp_call_id: 'DUP-1', status: 'ENDED', direction: 'INCOMING', duration: 0 };
    const responses = await Promise.all(Array.from({ length: 20 }, () => service.postWebhook(event)));
    expect(responses.map((response) => response.status)).toEqual(Array(20).fill(200));
    const ids = await Promise.all(responses.map(async (response) => ((await response.json()) as { event_id: string }).event_id));
    expect(new Set(ids).size).toBe(20);
    await waitForEventsApplied(env);
    const call = await service.call('DUP-1');
    expect(call.events).toHaveLength(20);
    expect(call).toMatchObject({ status: 'ENDED', duration: 0, attachment: { state: 'none' } });
    expect(call.events.map((event) => event.event_id).sort()).toEqual([...ids].sort());
  });
});

describe('bad input', () => {
  it.each([
    ['malformed JSON', '{"type":"RECORD",', 'application/json', 400, /not valid JSON/],
    ['a JSON array', '[1,2]', 'application/json', 400, /JSON object/],
    ['an empty body', '', 'application/json', 400, /empty/],
    ['a RECORD without whatsapp_call_id', '{"type":"RECORD","record_status":"READY"}', 'application/json', 400, /whatsapp_call_id/],
    ['a CALL with an object as whatsapp_call_id', '{"type":"CALL","whatsapp_call_id":{"a":1}}', 'application/json', 400, /whatsapp_call_id/],
    ['a call id over 128 characters', JSON.stringify({ type: 'RECORD', whatsapp_call_id: 'x'.repeat(129) }), 'application/json', 400, /128/],
    ['a __proto__ key', '{"type":"CALL","whatsapp_call_id":"p","__proto__":{"polluted":true}}', 'application/json', 400, /forbidden prototype property/],
    ['a constructor.prototype key', '{"type":"CALL","whatsapp_call_id":"p","constructor":{"prototype":{"polluted":true}}}', 'application/json', 400, /forbidden prototype property/],
    ['a body nested 40 levels deep', `{"type":"CALL","whatsapp_call_id":"deep","x":${'['.repeat(40)}${']'.repeat(40)}}`, 'application/json', 400, /nested more than 32 levels/],
    ['a body nested 10,000 levels deep', `{"type":"CALL","whatsapp_call_id":"deep","x":${'['.repeat(10_000)}${']'.repeat(10_000)}}`, 'application/json', 400, /nested/],
    ['form data', 'type=RECORD', 'application/x-www-form-urlencoded', 415, /application\/json/],
    ['plain text', '{"type":"RECORD"}', 'text/plain', 415, /application\/json/],
    ['a body over 64 KiB', JSON.stringify({ type: 'CALL', whatsapp_call_id: '1', pad: 'x'.repeat(70_000) }), 'application/json', 413, /64 KiB/],
  ])('refuses %s with a clear error', async (_name, body, contentType, status, message) => {
    const before = await countEvents();
    const response = await service.postWebhook(body, { contentType });
    expect(response.status).toBe(status);
    const answer = (await response.json()) as { error: string };
    expect(answer.error).toMatch(message);
    expect(await countEvents()).toBe(before);
  });

  it('answers an undecodable URL with a JSON 400', async () => {
    const response = await fetch(`${service.url}/api/calls/%ZZ`);
    expect(response.status).toBe(400);
    expect(((await response.json()) as { error: string }).error).toMatch(/not a valid url/);
  });

  it('names the field that is wrong', async () => {
    const response = await service.postWebhook({ type: 'CALL', whatsapp_call_id: '' });
    expect(response.status).toBe(400);
    expect(await response.json()).toEqual({ error: 'CALL event: whatsapp_call_id must not be empty', field: 'whatsapp_call_id' });
  });
});

describe('webhook token', () => {
  it('refuses a missing or wrong token with 401 and stores nothing', async () => {
    const before = await countEvents();
    for (const token of [null, 'wrong-token', `${WEBHOOK_TOKEN}x`]) {
      const response = await service.postWebhook(payloads.record_manual_test, { token });
      expect(response.status).toBe(401);
      expect(((await response.json()) as { error: string }).error).toMatch(/token/);
    }
    expect(await countEvents()).toBe(before);
  });

  it('refuses a repeated or encoded token parameter with 401, and never logs it', async () => {
    for (const query of [`token=${WEBHOOK_TOKEN}&token=${WEBHOOK_TOKEN}`, `%74oken=${WEBHOOK_TOKEN}&token=x`]) {
      const response = await fetch(`${service.url}/webhooks/wavoip?${query}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(payloads.record_manual_test),
      });
      expect(response.status).toBe(401);
    }
    expect(JSON.stringify(service.logs())).not.toContain(WEBHOOK_TOKEN);
  });

  it('takes the token from the X-Webhook-Token header', async () => {
    const response = await fetch(`${service.url}/webhooks/wavoip`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-webhook-token': WEBHOOK_TOKEN },
      body: JSON.stringify(payloads.device_update),
    });
    expect(response.status).toBe(200);
  });

  it('answers GET with a one-line hint, so users can check the URL', async () => {
    const response = await fetch(`${service.url}/webhooks/wavoip`);
    expect(response.status).toBe(200);
    const text = await response.text();
    expect(text.trim().split('\n')).toHaveLength(1);
    expect(text).toMatch(/WaVoIP/);
  });

  it('logs the product document lines verbatim', async () => {
    await service.postWebhook(payloads.record_manual_test);
    await waitFor(
      () => service.logs().some((line) => line.msg === '[WaVoIP Webhook] Recording READY for call test123'),
      'READY log line',
    );
    expect(service.logs().some((line) => line.msg === '[WaVoIP Webhook] Received event: RECORD')).toBe(true);
  });

  it('never writes the webhook token into the log', async () => {
    // Its own webhooks, the token in the query and in the header, applied before the log is read.
    expect((await service.postWebhook({ type: 'RECORD', whatsapp_call_id: 'TOKEN-LOG-1', record_status: 'MIXING' })).status).toBe(200);
    const inHeader = await fetch(`${service.url}/webhooks/wavoip`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-webhook-token': WEBHOOK_TOKEN },
      body: JSON.stringify({ type: 'RECORD', whatsapp_call_id: 'TOKEN-LOG-2', record_status: 'MIXING' }),
    });
    expect(inHeader.status).toBe(200);
    const logged = (callId: string) => service.logs().some((line) => line.call_id === callId && line.msg === '[WaVoIP Webhook] Received event: RECORD');
    await waitFor(() => logged('TOKEN-LOG-1') && logged('TOKEN-LOG-2'), 'the webhooks to be logged');
    expect(JSON.stringify(service.logs())).not.toContain(WEBHOOK_TOKEN);
  });
});

describe('when applying events fails in the database', () => {
  // A real database failure on every write to calls, as a full or failing disk would give.
  const refuseCalls =
    testDialect === 'sqlite'
      ? [`create trigger refuse_calls before insert on calls begin select raise(abort, 'simulated database failure'); end`]
      : [
          `create function refuse_calls() returns trigger language plpgsql as $$ begin raise exception 'simulated database failure'; end $$`,
          'create trigger refuse_calls before insert on calls for each row execute function refuse_calls()',
        ];
  const allowCalls =
    testDialect === 'sqlite' ? ['drop trigger if exists refuse_calls'] : ['drop trigger if exists refuse_calls on calls', 'drop function if exists refuse_calls()'];

  const RETRY_DELAY_MS = 1_000;
  const failureTimes = () => service.logs().filter((line) => line.msg === '[WaVoIP Webhook] Event processing failed; retrying in 1s').map((line) => line.time as number);

  it('keeps the acknowledged events unprocessed and applies them once the database recovers', async () => {
    const db = await openTestDatabase(env);
    try {
      for (const statement of refuseCalls) await db.run(statement);
      const response = await service.postWebhook({ type: 'CALL', whatsapp_call_id: 'DB-DOWN', status: 'ACTIVE' });
      expect(response.status).toBe(200);
      const { event_id } = (await response.json()) as { event_id: string };
      await waitFor(
        () => service.logs().some((line) => line.msg.startsWith('[WaVoIP Webhook] Event processing failed') && /simulated/.test(JSON.stringify(line.err))),
        'processing to fail',
      );
      expect(await db.get('select processed_at, processing_error from events where event_id = ?', [event_id])).toEqual({
        processed_at: null,
        processing_error: null,
      });
      // Webhooks keep coming while the database fails: they are stored, and do not turn the
      // retry into a busy loop. Each webhook wakes the processor, but after a failure it waits
      // for its one-second retry timer: on the service's own log clock, no two failed attempts
      // are closer than that, however fast or slow the posts came.
      for (let index = 0; index < 40; index++) {
        expect((await service.postWebhook({ type: 'RECORD', whatsapp_call_id: `DB-DOWN-${index}`, record_status: 'MIXING' })).status).toBe(200);
      }
      await waitFor(() => failureTimes().length >= 2, 'a retried failure');
      const times = failureTimes();
      const gaps = times.slice(1).map((time, index) => time - (times[index] as number));
      // A Node timer may fire a millisecond before Date.now() shows its full delay.
      expect(gaps.filter((gap) => gap < RETRY_DELAY_MS - 2)).toEqual([]);

      for (const statement of allowCalls) await db.run(statement);
      await waitFor(async () => (await service.api('/api/calls/DB-DOWN')).status === 200, 'the call after recovery');
      expect(await db.get('select processing_error from events where event_id = ?', [event_id])).toEqual({ processing_error: null });
    } finally {
      for (const statement of allowCalls) await db.run(statement);
      await db.close();
    }
  });
});
