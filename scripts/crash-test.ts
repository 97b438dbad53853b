/**
 * Crash safety, shown (issue 4, point 1). Several concurrent clients deliver thousands of WaVoIP
 * webhooks to the real service (a child process on a real DATA_DIR and database, next to a
 * loopback fake storage serving real audio), while the service is SIGKILLed at random moments
 * and restarted on the same DATA_DIR and database. Clients retry until they get a 200 with an
 * event_id, as WaVoIP does. After a last restart, quiescence and a clean stop (SIGTERM), the
 * database and DATA_DIR must show that nothing acknowledged was lost, every READY call is
 * attached exactly once with the right bytes, and nothing partial, orphaned or stuck is left.
 * Exits non-zero when a check fails.
 *
 *   npx tsx scripts/crash-test.ts [--events N] [--clients K] [--kills M] [--rate R] [--seed S] [--keep]
 *                                 [--database-url postgres://…]
 *
 * --rate paces the deliveries (events a second for all clients together; 0 = as fast as
 * possible) so that kills land during intake, processing and downloads alike, not after a
 * burst that is over in a second. --seed replays the same event stream and kill points (the
 * interleaving of clients still varies). --keep keeps DATA_DIR (and the PostgreSQL database)
 * even when every check passes.
 *
 * The database is SQLite in DATA_DIR unless --database-url (or else DATABASE_URL) gives a
 * PostgreSQL server: its admin URL (database `postgres`) makes the run create a database
 * `wavoip_crash_<random>`; a URL naming another database makes it create that one, which must
 * not exist yet. Either way the database is the run's own, and is dropped however the run ends
 * (unless --keep).
 */
import fsSync from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { OWNER_STALE_MS } from '../src/storage/temp-directory.ts';
import { startFakeWavoipStorage, type FakeWavoipStorage } from '../test/support/fake-wavoip-storage.ts';
import type { LogLine } from '../test/support/service-harness.ts';
import { UsageError, runDatabase, type Queries, type RunDatabase } from './crash-test/database.ts';
import { loadFixtures, makePlan, seededRandom, type Delivery, type Plan } from './crash-test/plan.ts';
import type { ServiceUnderTest } from './crash-test/service-under-test.ts';
import { verify, type Check } from './crash-test/verify.ts';

const { values: args } = parseArgs({
  options: {
    events: { type: 'string', default: '3000' },
    clients: { type: 'string', default: '6' },
    kills: { type: 'string', default: '5' },
    rate: { type: 'string', default: '150' },
    seed: { type: 'string' },
    keep: { type: 'boolean', default: false },
    'database-url': { type: 'string' },
  },
});

function integerArg(name: string, text: string | undefined, min: number): number {
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < min) {
    console.error(`--${name} must be a whole number of at least ${min} (got "${text}")`);
    process.exit(2);
  }
  return value;
}

const EVENTS = integerArg('events', args.events, 1);
const CLIENTS = integerArg('clients', args.clients, 1);
const KILLS = integerArg('kills', args.kills, 0);
const RATE = integerArg('rate', args.rate, 0);
const SEED = args.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : integerArg('seed', args.seed, 0);
const database: RunDatabase = (() => {
  try {
    // An empty DATABASE_URL counts as unset, as it does for the service.
    return runDatabase(args['database-url'] || process.env.DATABASE_URL || undefined);
  } catch (error) {
    console.error(`crash test: ${error instanceof Error ? error.message : String(error)}`);
    process.exit(2);
  }
})();

// The harness reads, when it loads (test/support/test-database.ts), which database tests use
// (TEST_DATABASE, set by vitest's postgres project) and the server where it creates them
// (TEST_POSTGRES_URL). This run decides both itself, so it sets them first and loads the harness
// after: the service gets the DATABASE_URL above, and the harness's check that the database
// exists looks on the same server.
delete process.env.TEST_DATABASE;
if (database.adminUrl !== null) process.env.TEST_POSTGRES_URL = database.adminUrl;
const { WEBHOOK_TOKEN, makeDataDir, testEnvironment } = await import('../test/support/service-harness.ts');
const serviceUnderTest = await import('./crash-test/service-under-test.ts');
const { sleep } = serviceUnderTest;
/**
 * Never-READY calls are given up after this, which bounds how long quiescence takes. It is also
 * how long a READY whose file is not published yet is retried, so it must outlast a few
 * restarts: the deadline runs on while the service is down.
 */
const POLL_MAX_WAIT_MS = 15_000;
const QUIESCENCE_TIMEOUT_MS = POLL_MAX_WAIT_MS + 50_000;
/** A run that hangs (service never answering again) must still end with a verdict. */
const WATCHDOG_MS = 300_000 + (RATE > 0 ? (EVENTS / RATE) * 1000 : 0);

interface Traffic {
  /** POST attempts, retries included. */
  sent: number;
  acknowledged: Map<string, Delivery>;
  /** 4xx answers: our bodies are all valid, so any is a defect. */
  refused: string[];
  /** Deliveries started so far; kills are timed against this. */
  started: number;
  inFlight: number;
}

async function deliver(service: ServiceUnderTest, delivery: Delivery, traffic: Traffic): Promise<void> {
  for (;;) {
    const url = await service.url();
    traffic.sent += 1;
    traffic.inFlight += 1;
    try {
      const response = await fetch(`${url}/webhooks/wavoip?token=${encodeURIComponent(WEBHOOK_TOKEN)}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: delivery.body,
        signal: AbortSignal.timeout(15_000),
      });
      const text = await response.text();
      if (response.status === 200) {
        const eventId = (JSON.parse(text) as { event_id?: unknown }).event_id;
        // Only a 200 that names the stored event counts as acknowledged.
        if (typeof eventId === 'string') {
          traffic.acknowledged.set(eventId, delivery);
          return;
        }
      } else if (response.status >= 400 && response.status < 500) {
        traffic.refused.push(`${response.status} ${text.slice(0, 200)} for ${delivery.body.slice(0, 120)}`);
        return;
      }
    } catch {
      // Refused, reset or cut mid-answer by a kill: not acknowledged, so WaVoIP would send it again.
    } finally {
      traffic.inFlight -= 1;
    }
    await sleep(20);
  }
}

/** K clients taking deliveries from one queue in order, paced to RATE overall. */
async function runClients(service: ServiceUnderTest, plan: Plan, traffic: Traffic): Promise<void> {
  let next = 0;
  const startedAt = Date.now();
  const client = async (): Promise<void> => {
    for (let index = next++; index < plan.deliveries.length; index = next++) {
      if (RATE > 0) await sleep(startedAt + (index / RATE) * 1000 - Date.now());
      traffic.started += 1;
      await deliver(service, plan.deliveries[index] as Delivery, traffic);
    }
  };
  await Promise.all(Array.from({ length: CLIENTS }, client));
}

/** What the service was in the middle of, sampled just before a kill, to show where kills land. */
async function describeWork(dataDir: string, traffic: Traffic, fixtureSizes: Set<number>): Promise<string> {
  const db = await database.open(dataDir);
  try {
    const unapplied = await db.count('select count(*) from events where processed_at is null');
    const leased = await db.count('select count(*) from fetch_jobs where locked_until is not null');
    // A temp file as long as a fixture is past the transfer: in fsync, rename or attach.
    const partials = partialDownloads(dataDir);
    const written = partials.filter((file) => fixtureSizes.has(fsSync.statSync(file, { throwIfNoEntry: false })?.size ?? -1)).length;
    return `${traffic.inFlight} requests in flight, ${unapplied} events unapplied, ${leased} jobs leased, ${partials.length} downloads in progress (${written} fully written)`;
  } finally {
    // Closed before the kill: a connection kept open would spare the next process SQLite's
    // crash recovery of the WAL, which is part of what is under test.
    await db.close();
  }
}

const tempRoot = (dataDir: string) => path.join(dataDir, 'recordings', '.tmp');

/** In every process's temp area. */
function partialDownloads(dataDir: string): string[] {
  return (fsSync.readdirSync(tempRoot(dataDir), { recursive: true }) as string[])
    .filter((name) => name.endsWith('.part'))
    .map((name) => path.join(tempRoot(dataDir), name));
}

/**
 * A killed process's temp area looks owned until its lock goes stale, and is then swept by the
 * live process: waits (bounded) until only the live process's area (and its lock) is left, so
 * that the final clean stop leaves the temp directory empty. Past the bound, the verdict shows
 * what stayed.
 */
async function waitForTempSweep(dataDir: string): Promise<void> {
  const deadline = Date.now() + 3 * OWNER_STALE_MS;
  while (Date.now() < deadline && fsSync.readdirSync(tempRoot(dataDir)).length > 2) await sleep(100);
}

/** Polls for a download under way; a kill while the service idles would test little. */
async function downloadUnderWay(dataDir: string, withinMs: number): Promise<boolean> {
  const deadline = Date.now() + withinMs;
  while (Date.now() < deadline) {
    if (partialDownloads(dataDir).length > 0) return true;
    await sleep(2);
  }
  return false;
}

/**
 * Kills at random points of the delivery stream, a random fraction of a second after the
 * point; every other kill instead waits (up to 1s) for a download to be under way.
 */
async function runKiller(
  service: ServiceUnderTest,
  dataDir: string,
  plan: Plan,
  traffic: Traffic,
  random: () => number,
): Promise<string[]> {
  const total = plan.deliveries.length;
  const fixtureSizes = new Set(plan.calls.flatMap((call) => (call.source ? [call.source.fixture.bytes.length] : [])));
  const notes: string[] = [];
  // One kill at a random point of each of KILLS equal stretches: random, but never bunched so
  // close that a process is killed before it has done anything, nor all early or all late.
  const stretch = total / Math.max(KILLS, 1);
  const points = Array.from({ length: KILLS }, (_, index) => Math.floor((index + random()) * stretch));
  for (const [index, point] of points.entries()) {
    while (traffic.started < point) await sleep(5);
    const aimed = index % 2 === 1 && (await downloadUnderWay(dataDir, 1_000));
    if (!aimed) await sleep(random() * 300);
    const work = await describeWork(dataDir, traffic, fixtureSizes);
    await service.crashAndRestart();
    notes.push(`kill ${index + 1} at delivery ${point}${aimed ? ', aimed at a download' : ''}: ${work}`);
  }
  return notes;
}

/** Waits until nothing is left to do: every event applied, no call pending, no job scheduled. */
async function waitForQuiescence(db: Queries): Promise<{ quiet: boolean; waitedMs: number }> {
  const startedAt = Date.now();
  let quietSamples = 0;
  while (Date.now() - startedAt < QUIESCENCE_TIMEOUT_MS) {
    const busy =
      (await db.count('select count(*) from events where processed_at is null')) +
      (await db.count("select count(*) from calls where attachment_state = 'pending'")) +
      (await db.count('select count(*) from fetch_jobs'));
    quietSamples = busy === 0 ? quietSamples + 1 : 0;
    // Twice in a row, so a state caught mid-transaction cannot pass for the end.
    if (quietSamples >= 2) return { quiet: true, waitedMs: Date.now() - startedAt };
    await sleep(250);
  }
  return { quiet: false, waitedMs: Date.now() - startedAt };
}

function attachmentsPerCall(logs: LogLine[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const line of logs) {
    if (typeof line.call_id === 'string' && line.msg.includes('Recording attached successfully')) {
      counts.set(line.call_id, (counts.get(line.call_id) ?? 0) + 1);
    }
  }
  return counts;
}

/** The service of this run, so that no child outlives the script however it ends. */
let active: ServiceUnderTest | undefined;
process.on('exit', () => active?.child()?.child.kill('SIGKILL'));

let ending: Promise<never> | undefined;
/**
 * Every way the run ends comes here, verdict or not: the service killed if it still runs, the
 * run's PostgreSQL database dropped (unless --keep), then the exit.
 */
function end(code: number): Promise<never> {
  ending ??= (async () => {
    active?.child()?.child.kill('SIGKILL');
    if (!args.keep) {
      await database.drop().catch((error: unknown) => console.error(`crash test: could not drop the run's database (${database.label}):`, error));
    }
    process.exit(code);
  })();
  return ending;
}

async function main(): Promise<number> {
  const storage: FakeWavoipStorage = await startFakeWavoipStorage();
  const random = seededRandom(SEED);
  const plan = makePlan({ events: EVENTS, random, storageOrigin: storage.origin, fixtures: loadFixtures(new URL('../test/fixtures/audio/', import.meta.url)) });
  for (const call of plan.calls) {
    const source = call.source;
    if (!source) continue;
    const audio = { kind: 'body', body: source.fixture.bytes, contentType: source.fixture.contentType } as const;
    storage.setRoute(source.path, source.notFoundFirst > 0 ? { kind: 'sequence', first: { kind: 'status', status: 404 }, times: source.notFoundFirst, then: audio } : audio);
  }

  await database.create();
  const dataDir = await makeDataDir();
  const env = testEnvironment(storage.origin, dataDir, {
    JOB_LEASE: '1s',
    POLL_INITIAL_DELAY: '100ms',
    POLL_MAX_DELAY: '400ms',
    POLL_MAX_WAIT: `${POLL_MAX_WAIT_MS}ms`,
    // DEVICE heartbeats log at debug; parsing those lines would only take CPU from the service.
    LOG_LEVEL: 'info',
    ...database.env,
  });
  const service = new serviceUnderTest.ServiceUnderTest(env, (error) => {
    console.error('crash test: the service died on its own and could not be started again:', error);
    void end(2);
  });
  active = service;
  const stopOnSignal = () => void service.stop().finally(() => end(130));
  process.once('SIGINT', stopOnSignal);
  process.once('SIGTERM', stopOnSignal);
  const watchdog = setTimeout(() => {
    console.error(`crash test: no verdict after ${WATCHDOG_MS / 1000}s; DATA_DIR kept at ${dataDir}`);
    void end(1);
  }, WATCHDOG_MS);
  watchdog.unref();

  console.log(`crash test: seed ${SEED}, ${plan.deliveries.length} deliveries (${plan.calls.length} calls), ${CLIENTS} clients, ${KILLS} kills, rate ${RATE || 'unpaced'}/s`);
  console.log(`stream: ${plan.duplicates} redeliveries of the same body, ${plan.callsOutOfOrder} calls whose events arrive out of order`);
  console.log(`DATA_DIR ${dataDir}`);
  console.log(`database ${database.label}`);
  const began = Date.now();
  await service.boot();
  const traffic: Traffic = { sent: 0, acknowledged: new Map(), refused: [], started: 0, inFlight: 0 };
  const [, killNotes] = await Promise.all([
    runClients(service, plan, traffic),
    runKiller(service, dataDir, plan, traffic, seededRandom(SEED + 1)),
  ]);
  const deliveredMs = Date.now() - began;

  // One more crash before the verdict: whatever the last run had in flight must be recovered too.
  await service.crashAndRestart();
  const db = await database.open(dataDir);
  const { quiet, waitedMs } = await waitForQuiescence(db);
  await waitForTempSweep(dataDir);
  // Stopped before the verdict: what a clean stop leaves is part of it.
  await service.stop();
  const logs = service.allLogs();
  // Logged at each start and sweep for the temp files a killed download left: proof kills hit downloads.
  const partialsRemoved = logs
    .filter((line) => line.msg.includes('partial download') && typeof line.removed === 'number')
    .reduce((sum, line) => sum + (line.removed as number), 0);
  const verdict = await verify({ db, dataDir, calls: plan.calls, acknowledged: traffic.acknowledged, attachLogs: attachmentsPerCall(logs), now: Date.now() });
  const states = await db.all<{ state: string; n: number }>('select attachment_state as state, count(*) as n from calls group by attachment_state order by 1');
  await db.close();
  await storage.close();
  clearTimeout(watchdog);

  const deliveries = plan.deliveries.length;
  const checks: Check[] = [
    { name: `quiescence within ${QUIESCENCE_TIMEOUT_MS / 1000}s of the last restart`, ok: quiet, detail: `${(waitedMs / 1000).toFixed(1)}s` },
    { name: 'no webhook refused (4xx)', ok: traffic.refused.length === 0, detail: traffic.refused.slice(0, 3).join('; ') || 'none' },
    { name: 'every delivery acknowledged in the end', ok: traffic.acknowledged.size === deliveries, detail: `${traffic.acknowledged.size} of ${deliveries}` },
    { name: 'the service never died on its own', ok: service.unexpectedExits.length === 0, detail: service.unexpectedExits.join('; ') || 'never' },
    ...verdict.checks,
  ];
  const failed = checks.filter((result) => !result.ok);
  console.log(`
deliveries   = ${deliveries}  (${plan.calls.length} calls: ${plan.calls.filter((call) => call.expected === 'attached').length} with a recording)
sent         = ${traffic.sent}  (POST attempts, retries included)
acknowledged = ${traffic.acknowledged.size}
stored       = ${verdict.stored}  (events rows; a request cut by a kill can be stored and then sent again)
lost         = ${verdict.lost}
duplicated   = ${verdict.duplicated}
kills        = ${KILLS}  (SIGKILL at random moments; ${service.kills - KILLS} more before the final check)
calls        = ${states.map(({ state, n }) => `${state} ${n}`).join(', ')}
partials     = ${partialsRemoved}  (partial downloads of killed processes found and removed)
time         = delivery ${(deliveredMs / 1000).toFixed(1)}s, quiescence ${(waitedMs / 1000).toFixed(1)}s
`);
  for (const note of killNotes) console.log(note);
  console.log('');
  for (const result of checks) console.log(`${result.ok ? 'ok  ' : 'FAIL'} ${result.name}: ${result.detail}`);

  if (failed.length > 0 || args.keep) {
    // Every run's log in one file: what each process did before its kill is the evidence.
    await fs.writeFile(path.join(dataDir, 'service-log.jsonl'), logs.map((line) => JSON.stringify(line)).join('\n'));
    console.log(`\nDATA_DIR kept for inspection, with every run's log in service-log.jsonl: ${dataDir}`);
    if (database.dialect === 'postgres') console.log(args.keep ? `database kept: ${database.label}` : 'the database is dropped; --keep keeps it too');
    console.log(`(the same event stream and kill points: --seed ${SEED})`);
  } else {
    await fs.rm(dataDir, { recursive: true, force: true });
  }
  console.log(failed.length === 0 ? '\ncrash test passed' : `\ncrash test FAILED: ${failed.length} check(s)`);
  return failed.length === 0 ? 0 : 1;
}

main().then(
  (code) => end(code),
  (error: unknown) => {
    console.error('crash test could not run:', error instanceof UsageError ? error.message : error);
    return end(2);
  },
);
