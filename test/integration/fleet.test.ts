import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrations } from '../../src/db/migrations/index.ts';
import { startFakeWavoipStorage, type FakeWavoipStorage } from '../support/fake-wavoip-storage.ts';
import {
  API_TOKEN,
  makeDataDir,
  startChildService,
  testEnvironment,
  waitFor,
  WEBHOOK_TOKEN,
  type ChildService,
} from '../support/service-harness.ts';
import { databaseEnvironment, ensureDatabase, openTestDatabase, testDialect, type TestDatabase } from '../support/test-database.ts';
import { sha256 } from '../support/sha256.ts';

/**
 * Several replicas of the service on one PostgreSQL database, as a platform runs them behind a
 * load balancer. SQLite is one process by design; this runs in the `postgres` project.
 */
const CALLS = 500;
const REPLICAS = 3;
const CONCURRENCY = 4;
const ogg = fs.readFileSync(new URL('../fixtures/audio/call-pt-br-9s.ogg', import.meta.url));
const oggSha256 = sha256(ogg);

const ATTACHED = '[WaVoIP Recording Webhook] ✅ Recording attached successfully';
const callIdOf = (index: number) => `FLEET-${String(index).padStart(3, '0')}`;

let storage: FakeWavoipStorage;
const started: ChildService[] = [];

beforeAll(async () => {
  storage = await startFakeWavoipStorage();
});
afterAll(async () => {
  await Promise.all(started.map((replica) => replica.kill('SIGKILL')));
  await storage?.close();
});

async function startReplicas(count: number, overrides: Record<string, string>): Promise<{ replicas: ChildService[]; dataDirs: string[]; env: Record<string, string> }> {
  const database = databaseEnvironment();
  const dataDirs = await Promise.all(Array.from({ length: count }, () => makeDataDir()));
  // One after the other on a fresh database: the first migrates, the others find it done.
  // (Starting together is shown below.)
  const replicas: ChildService[] = [];
  for (const dataDir of dataDirs) {
    const replica = await startChildService(testEnvironment(storage.origin, dataDir, { ...database, ...overrides }));
    started.push(replica);
    replicas.push(replica);
  }
  return { replicas, dataDirs, env: testEnvironment(storage.origin, dataDirs[0]!, { ...database, ...overrides }) };
}

/** What a load balancer does: the chosen replica, or the next one that answers. */
async function deliver(replicas: ChildService[], first: number, body: unknown): Promise<void> {
  for (let offset = 0; offset < replicas.length; offset += 1) {
    const replica = replicas[(first + offset) % replicas.length]!;
    try {
      const response = await fetch(`${replica.url}/webhooks/wavoip?token=${WEBHOOK_TOKEN}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      if (response.status === 200) return;
    } catch {
      // Killed: the next replica takes it.
    }
  }
  throw new Error(`no replica took ${JSON.stringify(body)}`);
}

const messagesOf = (replica: ChildService, message: string) => replica.logs().filter((line) => line.msg === message);
const downloadsStartedBy = (replica: ChildService) =>
  new Set(replica.logs().filter((line) => String(line.msg).startsWith('[WaVoIP Recording Webhook] Downloading recording for call')).map((line) => String(line.call_id)));

describe.skipIf(testDialect !== 'postgres')(`a fleet of ${REPLICAS} replicas on one PostgreSQL`, () => {
  it(`${CALLS} READY events spread across the replicas and duplicated, one replica SIGKILLed mid-run: each recording attached exactly once`, async () => {
    for (let index = 0; index < CALLS; index += 1) {
      // Far enough away that downloads overlap, so the kill lands on downloads in flight.
      storage.setRoute(`/${callIdOf(index)}`, { kind: 'delayed', delayMs: 300, then: { kind: 'body', body: ogg, contentType: 'audio/ogg' } });
    }
    const { replicas, dataDirs, env } = await startReplicas(REPLICAS, { DOWNLOAD_CONCURRENCY: String(CONCURRENCY), JOB_LEASE: '2s' });
    const database: TestDatabase = await openTestDatabase(env);
    const attachedCount = async () => (await database.get<{ n: number }>("select count(*) as n from calls where attachment_state = 'attached'"))!.n;

    try {
      // Every event twice, to two different replicas, from several senders at once.
      const deliveries = Array.from({ length: CALLS * 2 }, (_, delivery) => {
        const index = delivery % CALLS;
        const body = { type: 'RECORD', whatsapp_call_id: callIdOf(index), record_status: 'READY', record_url: storage.url(`/${callIdOf(index)}`) };
        return { replica: (index + Math.floor(delivery / CALLS)) % REPLICAS, body };
      });
      let next = 0;
      const sending = Promise.all(
        Array.from({ length: 12 }, async () => {
          while (next < deliveries.length) {
            const { replica, body } = deliveries[next++]!;
            await deliver(replicas, replica, body);
          }
        }),
      );

      const victim = replicas[0]!;
      // Killed with downloads in flight: started by its log, not yet attached.
      const inFlight = () => downloadsStartedBy(victim).size - messagesOf(victim, ATTACHED).length;
      await waitFor(async () => (await attachedCount()) >= CALLS / 5 && inFlight() >= 2, 'a fifth attached, and downloads in flight on the victim');
      await victim.kill('SIGKILL');
      await sending;
      await waitFor(async () => (await attachedCount()) === CALLS, `all ${CALLS} recordings attached`, 120_000);

      // Attached exactly once each, across the fleet: every call attached, and no survivor
      // attached a call twice or one another replica had attached. (The killed replica may have
      // attached a call and died before logging it, so its log is not counted here.)
      expect(await attachedCount()).toBe(CALLS);
      const attachedBy = new Map<string, string[]>();
      for (const [index, replica] of replicas.entries()) {
        for (const line of messagesOf(replica, ATTACHED)) attachedBy.set(String(line.call_id), [...(attachedBy.get(String(line.call_id)) ?? []), `replica ${index}`]);
      }
      expect([...attachedBy.entries()].filter(([, by]) => by.length > 1)).toEqual([]);

      // Downloaded once each, but for what the killed replica had in flight (a download it
      // finished and never attached is done again by another).
      const completed = Array.from({ length: CALLS }, (_, index) => storage.completed(`/${callIdOf(index)}`));
      expect(completed.every((count) => count >= 1)).toBe(true);
      const repeated = completed.reduce((sum, count) => sum + count, 0) - CALLS;
      expect(repeated).toBeLessThanOrEqual(CONCURRENCY);

      // The killed replica's claimed work was finished by the others.
      const attachedByVictim = new Set(messagesOf(victim, ATTACHED).map((line) => String(line.call_id)));
      const orphaned = [...downloadsStartedBy(victim)].filter((callId) => !attachedByVictim.has(callId));
      // (One it attached just before dying, without the log line, is attached already: no survivor takes it.)
      const finishedBySurvivors = orphaned.filter((callId) => replicas.slice(1).some((replica) => messagesOf(replica, ATTACHED).some((line) => line.call_id === callId)));
      expect(finishedBySurvivors.length).toBeGreaterThan(0);
      // Each replica took a share of the work.
      for (const replica of replicas) expect(messagesOf(replica, ATTACHED).length).toBeGreaterThan(0);

      // Every attached recording is on disk with the right bytes, in the store of the replica
      // that attached it.
      const rows = await database.all<{ call_id: string; recording_key: string; recording_sha256: string }>(
        'select call_id, recording_key, recording_sha256 from calls',
      );
      expect(rows).toHaveLength(CALLS);
      for (const row of rows) {
        expect(row.recording_sha256).toBe(oggSha256);
        const holders = dataDirs.filter((dataDir) => fs.existsSync(path.join(dataDir, 'recordings', row.recording_key)));
        expect(holders.length, `files for ${row.call_id}`).toBeGreaterThanOrEqual(1);
      }
      // Nothing is left to do, and no job is stuck.
      expect(await database.get('select call_id from fetch_jobs limit 1')).toBeUndefined();
      expect(await database.get('select seq from events where processed_at is null limit 1')).toBeUndefined();

      // The survivors still serve the API for any call.
      const answer = await fetch(`${replicas[1]!.url}/api/calls/${callIdOf(0)}`, { headers: { authorization: `Bearer ${API_TOKEN}` } });
      expect(answer.status).toBe(200);
    } finally {
      await database.close();
    }
    // 500 downloads of 300 ms each, 12 and then 8 at a time: about 20 s on an idle machine.
  }, 120_000);

  it('new work reaches an idle replica at once (LISTEN/NOTIFY), not at its next scan', async () => {
    // JOB_LEASE is also the longest an idle replica sleeps between scans: an hour here, so only
    // the notification can wake it within the test.
    const { replicas } = await startReplicas(2, { DOWNLOAD_CONCURRENCY: '1', JOB_LEASE: '1h' });

    // One replica's only download slot hangs on a storage that never answers. Both hear of the
    // job, so either may take it: the one that did is the busy one.
    storage.setRoute('/NOTIFY-STALLED', { kind: 'stall-before-headers' });
    await deliver(replicas, 0, { type: 'RECORD', whatsapp_call_id: 'NOTIFY-STALLED', record_status: 'READY', record_url: storage.url('/NOTIFY-STALLED') });
    await waitFor(() => storage.requests('/NOTIFY-STALLED') === 1, 'a replica to start the stalled download');
    await waitFor(() => replicas.some((replica) => downloadsStartedBy(replica).has('NOTIFY-STALLED')), 'the stalled download to be logged');
    const busy = replicas.find((replica) => downloadsStartedBy(replica).has('NOTIFY-STALLED'))!;
    const idle = replicas.find((replica) => replica !== busy)!;

    // A READY taken by the busy replica is downloaded by the idle one.
    storage.setRoute('/NOTIFY-NEW', { kind: 'body', body: ogg, contentType: 'audio/ogg' });
    await deliver([busy], 0, { type: 'RECORD', whatsapp_call_id: 'NOTIFY-NEW', record_status: 'READY', record_url: storage.url('/NOTIFY-NEW') });
    await waitFor(() => messagesOf(idle, ATTACHED).some((line) => line.call_id === 'NOTIFY-NEW'), 'the idle replica to attach the new recording');
    expect(messagesOf(busy, ATTACHED)).toEqual([]);
    // The busy replica applied the event (the idle one only heard of the job, by notification).
    const appliedBy = (replica: ChildService) => replica.logs().some((line) => line.msg === '[WaVoIP Webhook] Recording READY for call NOTIFY-NEW');
    expect([appliedBy(busy), appliedBy(idle)]).toEqual([true, false]);
  });

  it('applies an event left stored but not applied, as a replica killed after its commit leaves it, with no webhook to wake the others', async () => {
    const { replicas, env } = await startReplicas(1, {});
    const [survivor] = replicas as [ChildService];
    storage.setRoute('/ORPHANED-EVENT', { kind: 'body', body: ogg, contentType: 'audio/ogg' });
    // What a replica killed between its commit and applying the event leaves behind.
    const payload = JSON.stringify({ type: 'RECORD', whatsapp_call_id: 'ORPHANED-EVENT', record_status: 'READY', record_url: storage.url('/ORPHANED-EVENT') });
    const database = await openTestDatabase(env);
    try {
      await database.run('insert into events (event_id, received_at, type, call_id, payload) values (?, ?, ?, ?, ?)', [
        'acknowledged-by-a-dead-replica',
        Date.now(),
        'RECORD',
        'ORPHANED-EVENT',
        payload,
      ]);
    } finally {
      await database.close();
    }
    expect((await survivor.waitForAttachment('ORPHANED-EVENT', 'attached')).attachment.sha256).toBe(oggSha256);
    expect(survivor.logs().some((line) => line.msg === '[WaVoIP Webhook] Recording READY for call ORPHANED-EVENT')).toBe(true);
  });

  it('replicas starting together on a fresh database migrate it once, without errors', async () => {
    const database = databaseEnvironment();
    // Created empty first, as an operator would; the replicas then race to migrate it.
    await ensureDatabase(database);
    const dataDirs = await Promise.all(Array.from({ length: 3 }, () => makeDataDir()));
    const replicas = await Promise.all(dataDirs.map((dataDir) => startChildService(testEnvironment(storage.origin, dataDir, database))));
    started.push(...replicas);
    const migrated = replicas.filter((replica) => replica.logs().some((line) => line.msg === 'Database migrated'));
    expect(migrated).toHaveLength(1);
    const db = await openTestDatabase(testEnvironment(storage.origin, dataDirs[0]!, database));
    try {
      const rows = await db.all<{ name: string }>('select name from kysely_migration order by name');
      expect(rows.map((row) => row.name)).toEqual(Object.keys(migrations));
    } finally {
      await db.close();
    }
    for (const replica of replicas) expect((await fetch(`${replica.url}/readyz`)).status).toBe(200);
  });
});
