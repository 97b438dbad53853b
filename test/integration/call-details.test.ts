import fs from 'node:fs';
import { Migrator, sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/config.ts';
import { createDb } from '../../src/db/database.ts';
import { migrations } from '../../src/db/migrations/index.ts';
import { startFakeWavoipStorage, type FakeWavoipStorage } from '../support/fake-wavoip-storage.ts';
import { NO_POLLING, makeDataDir, runCli, startInProcessService, testEnvironment, waitFor, type InProcessService } from '../support/service-harness.ts';
import { ensureDatabase, waitForEventsApplied } from '../support/test-database.ts';

const ogg = fs.readFileSync(new URL('../fixtures/audio/call-pt-br-9s.ogg', import.meta.url));

let storage: FakeWavoipStorage;
let service: InProcessService;
let env: Record<string, string>;
const startedAt: Record<string, string> = {};

/** Five calls, one after another (distinct first-seen times), each through its own events. */
const CALLS: Record<string, Record<string, unknown>[]> = {
  // Answered for 30 seconds, then a late NOT_ANSWERED: the regression.
  'C1-IN-ANSWERED': [
    { type: 'CALL', action: 'CREATE', status: 'ACTIVE', direction: 'INCOMING', caller: '5511911112222', receiver: '5566999050312', id_session: 8758847 },
    { type: 'CALL', action: 'UPDATE', status: 'ENDED', duration: 30 },
    { type: 'CALL', action: 'UPDATE', status: 'NOT_ANSWERED', duration: 0 },
  ],
  'C2-OUT-MISSED': [
    { type: 'CALL', action: 'CREATE', status: 'NOT_ANSWERED', direction: 'OUTCOMING', caller: '5566999050312', receiver: '556692341814', id_session: 8758847, duration: 0 },
  ],
  'C3-IN-REJECTED': [
    { type: 'CALL', action: 'CREATE', status: 'REJECTED', direction: 'incoming', caller: '5521987654321', receiver: '5577988887777', id_session: 111, duration: 0 },
  ],
  // The CALL schema's second `type` key won; a peer object names the other party.
  'C4-OUT-PEER': [
    { type: 'HUMANIZED', action: 'CREATE', status: 'ACTIVE', direction: 'OUTGOING', id_session: 111, peer: { phone: '5521987654321', display_name: 'Maria Souza' } },
  ],
  // Our side left out of the payload: the device's phone stands in.
  'C5-IN-FAILED': [
    { type: 'DEVICE', action: 'UPDATE', id_session: 222, phone: '5531999990000', status: 'open' },
    { type: 'CALL', action: 'CREATE', status: 'FAILED', direction: 'INCOMING', caller: '5511911112222', id_session: 222, duration: 0 },
  ],
};

beforeAll(async () => {
  storage = await startFakeWavoipStorage();
  env = testEnvironment(storage.origin, await makeDataDir(), NO_POLLING);
  service = await startInProcessService(env);
  for (const [callId, events] of Object.entries(CALLS)) {
    const previous = Date.now();
    await waitFor(() => Date.now() > previous, 'the clock to move');
    for (const event of events) {
      const body = event.type === 'DEVICE' ? event : { whatsapp_call_id: callId, ...event };
      expect((await service.postWebhook(body)).status).toBe(200);
      await waitForEventsApplied(env);
    }
    startedAt[callId] = (await service.call(callId)).started_at;
  }
});

afterAll(async () => {
  await service?.stop();
  await storage?.close();
});

async function listIds(query: string): Promise<string[]> {
  const response = await service.api(`/api/calls?${query}`);
  if (response.status !== 200) throw new Error(`GET /api/calls?${query}: ${response.status} ${await response.text()}`);
  return ((await response.json()) as { calls: { whatsapp_call_id: string }[] }).calls.map((call) => call.whatsapp_call_id);
}

describe('GET /api/calls/:id: the call as a person reads it', () => {
  it('an answered call stays answered and ENDED after a late NOT_ANSWERED', async () => {
    const call = await service.call('C1-IN-ANSWERED');
    expect(call).toMatchObject({
      direction: 'incoming',
      direction_raw: 'INCOMING',
      status: 'ENDED',
      outcome: 'answered',
      peer_phone: '+5511911112222',
      peer_phone_raw: '5511911112222',
      device_phone: '+5566999050312',
      device_phone_raw: '5566999050312',
      peer_name: null,
      call_type: null,
      started_at: startedAt['C1-IN-ANSWERED'],
    });
    // ACTIVE was the first event: answered when the call was first seen; ended at ENDED, later.
    expect(call.answered_at).toBe(call.started_at);
    expect(Date.parse(call.ended_at as string)).toBeGreaterThanOrEqual(Date.parse(call.started_at));
  });

  it('an outgoing call: we are the caller, the receiver is the peer; never connected, so never answered', async () => {
    expect(await service.call('C2-OUT-MISSED')).toMatchObject({
      direction: 'outgoing', direction_raw: 'OUTCOMING', outcome: 'missed', peer_phone: '+556692341814', device_phone: '+5566999050312', answered_at: null,
    });
  });

  it('the call type and the peer object are shown', async () => {
    expect(await service.call('C4-OUT-PEER')).toMatchObject({
      direction: 'outgoing', outcome: 'in_progress', call_type: 'HUMANIZED', peer_name: 'Maria Souza', peer_phone: '+5521987654321', ended_at: null,
    });
  });

  it("our number comes from the device's DEVICE events when the call leaves it out", async () => {
    expect(await service.call('C5-IN-FAILED')).toMatchObject({ outcome: 'failed', device_phone: '+5531999990000', device_phone_raw: '5531999990000' });
  });
});

describe('GET /api/calls filters', () => {
  it.each<[string, string[]]>([
    ['direction=incoming', ['C5-IN-FAILED', 'C3-IN-REJECTED', 'C1-IN-ANSWERED']],
    ['direction=outgoing', ['C4-OUT-PEER', 'C2-OUT-MISSED']],
    ['outcome=answered', ['C1-IN-ANSWERED']],
    ['outcome=missed', ['C2-OUT-MISSED']],
    ['outcome=rejected', ['C3-IN-REJECTED']],
    ['outcome=failed', ['C5-IN-FAILED']],
    ['outcome=in_progress', ['C4-OUT-PEER']],
    ['device=8758847', ['C2-OUT-MISSED', 'C1-IN-ANSWERED']],
    ['device=111', ['C4-OUT-PEER', 'C3-IN-REJECTED']],
    ['device=999', []],
    // The peer's number, as digits or E.164; ours (from the payload, or from the device).
    ['phone=5511911112222', ['C5-IN-FAILED', 'C1-IN-ANSWERED']],
    ['phone=%2B5511911112222', ['C5-IN-FAILED', 'C1-IN-ANSWERED']],
    ['phone=%2B55%2021%2098765-4321', ['C4-OUT-PEER', 'C3-IN-REJECTED']],
    ['phone=5566999050312', ['C2-OUT-MISSED', 'C1-IN-ANSWERED']],
    ['phone=%2B5531999990000', ['C5-IN-FAILED']],
    ['direction=incoming&outcome=answered&device=8758847&phone=5511911112222', ['C1-IN-ANSWERED']],
    ['state=pending&direction=incoming', ['C1-IN-ANSWERED']],
    ['state=none&direction=outgoing', ['C2-OUT-MISSED']],
  ])('%s', async (query, expected) => {
    expect(await listIds(query)).toEqual(expected);
  });

  it('since (inclusive) and until (exclusive) bound the start time', async () => {
    const since = encodeURIComponent(startedAt['C2-OUT-MISSED'] as string);
    const until = encodeURIComponent(startedAt['C4-OUT-PEER'] as string);
    expect(await listIds(`since=${since}&until=${until}`)).toEqual(['C3-IN-REJECTED', 'C2-OUT-MISSED']);
    expect(await listIds(`since=${since}`)).toEqual(['C5-IN-FAILED', 'C4-OUT-PEER', 'C3-IN-REJECTED', 'C2-OUT-MISSED']);
    expect(await listIds(`until=${until}&direction=incoming`)).toEqual(['C3-IN-REJECTED', 'C1-IN-ANSWERED']);
    expect(await listIds('since=2000-01-01&until=2000-01-02')).toEqual([]);
  });

  it('pages a filtered list with the cursor', async () => {
    const first = (await (await service.api('/api/calls?direction=incoming&limit=2')).json()) as { calls: { whatsapp_call_id: string }[]; next_cursor: string };
    expect(first.calls.map((call) => call.whatsapp_call_id)).toEqual(['C5-IN-FAILED', 'C3-IN-REJECTED']);
    expect(await listIds(`direction=incoming&limit=2&cursor=${first.next_cursor}`)).toEqual(['C1-IN-ANSWERED']);
  });

  it.each([
    ['direction=sideways', 'direction'],
    ['direction=INCOMING', 'direction'],
    ['outcome=won', 'outcome'],
    ['phone=abc', 'phone'],
    ['phone=011911112222', 'phone'],
    ['since=yesterday', 'since'],
    ['since=2024-02-30', 'since'],
    ['until=2024-05-01T12:00:00', 'until'],
    ['until=2024-05-01T25:00:00Z', 'until'],
    ['device=', 'device'],
    ['device=%00', 'device'],
    ['cursor=not-a-cursor', 'cursor'],
    [`cursor=${Buffer.from(JSON.stringify([1, 'C1\u0000'])).toString('base64url')}`, 'cursor'],
  ])('refuses %s with a 400 naming %s', async (query, field) => {
    const response = await service.api(`/api/calls?${query}`);
    expect(response.status).toBe(400);
    const body = (await response.json()) as { field: string; error: string };
    expect(body.field).toBe(field);
    // The value was judged, not the parameter refused as unknown.
    expect(body.error).not.toMatch(/not a parameter/);
  });
});

describe('wavoip-recordings calls', () => {
  it('shows direction, peer and outcome, and takes the filters as flags', async () => {
    const all = await runCli(env, 'calls', '--url', service.url);
    expect(all.code).toBe(0);
    expect(all.stdout).toMatch(/^FIRST SEEN\s+CALL ID\s+DIRECTION\s+PEER\s+OUTCOME\s+ATTACHMENT/);
    expect(all.stdout).toMatch(/C4-OUT-PEER\s+outgoing\s+\+5521987654321 \(Maria Souza\)\s+in_progress\s+pending/);

    const filtered = await runCli(env, 'calls', '--url', service.url, '--direction', 'incoming', '--outcome', 'answered', '--phone', '+5511911112222',
      '--device', '8758847', '--since', startedAt['C1-IN-ANSWERED'] as string, '--until', '2999-01-01', '--json');
    expect((JSON.parse(filtered.stdout) as { calls: { whatsapp_call_id: string }[] }).calls.map((call) => call.whatsapp_call_id)).toEqual(['C1-IN-ANSWERED']);

    const none = await runCli(env, 'calls', '--url', service.url, '--outcome', 'rejected', '--direction', 'outgoing');
    expect(none.stdout).toBe('No calls match.\n');
    const badPhone = await runCli(env, 'calls', '--url', service.url, '--phone', 'abc');
    expect(badPhone.code).toBe(1);
    expect(badPhone.stderr).toMatch(/phone must be a number/);
    const badOutcome = await runCli(env, 'calls', '--url', service.url, '--outcome', 'won');
    expect(badOutcome.code).not.toBe(0);
    expect(badOutcome.stderr).toMatch(/must be one of in_progress, answered/);
  });
});

describe('a record_url without READY is a hint', () => {
  it('is polled besides the template URL: a recording only the hint has is attached', async () => {
    const other = await startInProcessService(testEnvironment(storage.origin, await makeDataDir(), { POLL_INITIAL_DELAY: '100ms', POLL_MAX_DELAY: '200ms', POLL_MAX_WAIT: '10s' }));
    try {
      storage.setRoute('/elsewhere/HINT-1.ogg', { kind: 'body', body: ogg, contentType: 'audio/ogg' });
      await other.postWebhook({ type: 'RECORD', action: 'UPDATE', whatsapp_call_id: 'HINT-1', record_url: storage.url('/elsewhere/HINT-1.ogg') });
      await other.postWebhook({ type: 'CALL', action: 'UPDATE', whatsapp_call_id: 'HINT-1', status: 'ENDED', direction: 'INCOMING', duration: 30 });
      const call = await other.waitForAttachment('HINT-1');
      expect(call.attachment).toMatchObject({ state: 'attached', size: ogg.length });
      expect(call).toMatchObject({ record_status: null, record_url: null, record_url_hint: storage.url('/elsewhere/HINT-1.ogg') });
      expect(storage.requests('/elsewhere/HINT-1.ogg')).toBeGreaterThanOrEqual(1);
      expect(other.logsFor('HINT-1').some((line) => line.hinted === true && /at the URL its webhook hinted/.test(line.msg))).toBe(true);
    } finally {
      await other.stop();
    }
  });

  it('that the allow-list refuses is never fetched, and the template URL still is', async () => {
    const other = await startInProcessService(testEnvironment(storage.origin, await makeDataDir(), { POLL_INITIAL_DELAY: '100ms', POLL_MAX_DELAY: '200ms' }));
    try {
      storage.setRoute('/HINT-2', { kind: 'sequence', first: { kind: 'status', status: 404 }, times: 2, then: { kind: 'body', body: ogg, contentType: 'audio/ogg' } });
      await other.postWebhook({ type: 'RECORD', whatsapp_call_id: 'HINT-2', record_url: 'http://10.0.0.1/HINT-2' });
      await other.postWebhook({ type: 'CALL', whatsapp_call_id: 'HINT-2', status: 'ENDED', duration: 30 });
      expect((await other.waitForAttachment('HINT-2')).attachment.state).toBe('attached');
      expect(storage.requests('/HINT-2')).toBe(3);
      expect(other.logsFor('HINT-2').some((line) => line.hinted === true)).toBe(false);
    } finally {
      await other.stop();
    }
  });
});

describe('a database from before 004', () => {
  it('gets direction, parties and outcome for the calls it holds when the service starts', async () => {
    const oldEnv = testEnvironment(storage.origin, await makeDataDir(), NO_POLLING);
    await ensureDatabase(oldEnv);
    const db = createDb(loadConfig(oldEnv).database);
    try {
      const { error } = await new Migrator({ db, provider: { getMigrations: async () => migrations } }).migrateTo('003-fetch-priority');
      if (error) throw error;
      // As 003's code stored it: a connected call whose late NOT_ANSWERED won the old tie-break.
      await sql`insert into calls (call_id, direction, caller, receiver, device_id, status, was_connected, duration, first_seen_at, last_seen_at, ended_at, attachment_state)
        values ('OLD-1', 'OUTCOMING', '5566999050312', '556692341814', '8758847', 'NOT_ANSWERED', 1, 30, 1000, 40000, 31000, 'none')`.execute(db);
    } finally {
      await db.destroy();
    }
    const upgraded = await startInProcessService(oldEnv);
    try {
      expect(await upgraded.call('OLD-1')).toMatchObject({
        direction: 'outgoing', outcome: 'answered', peer_phone: '+556692341814', device_phone: '+5566999050312', answered_at: new Date(1_000).toISOString(),
      });
      const page = (await (await upgraded.api('/api/calls?outcome=answered&direction=outgoing&phone=556692341814')).json()) as { calls: { whatsapp_call_id: string }[] };
      expect(page.calls.map((call) => call.whatsapp_call_id)).toEqual(['OLD-1']);
      expect(upgraded.logs().some((line) => /Derived direction, parties and outcome for 1 calls/.test(line.msg))).toBe(true);
    } finally {
      await upgraded.stop();
    }
  });
});
