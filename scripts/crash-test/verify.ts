/**
 * The crash test's verdict, read straight from the service's database (SQLite file or
 * PostgreSQL) and DATA_DIR, not through its API: the point is to check what a crash left behind,
 * and the API could hide it.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Queries } from './database.ts';
import type { Delivery, PlannedCall } from './plan.ts';

export interface Check {
  name: string;
  ok: boolean;
  detail: string;
}

export interface Verdict {
  checks: Check[];
  lost: number;
  duplicated: number;
  stored: number;
}

/** The scheduler claims a due job within milliseconds; seconds late means nobody will. */
const OVERDUE_MS = 5_000;

interface CallRow {
  call_id: string;
  attachment_state: string;
  attachment_reason: string | null;
  record_status: string | null;
  recording_key: string | null;
  recording_size: number | null;
  recording_sha256: string | null;
}

interface JobRow {
  call_id: string;
  run_at: number;
  locked_until: number | null;
  locked_by: string | null;
  attempts: number;
  last_error: string | null;
}

/** Up to five examples, so a failure names what to look at without flooding the output. */
function examples(items: readonly unknown[]): string {
  const shown = items.slice(0, 5).map((item) => (typeof item === 'string' ? item : JSON.stringify(item)));
  return items.length > 5 ? `${shown.join('; ')}; … (${items.length} in all)` : shown.join('; ');
}

function check(name: string, failures: readonly unknown[], okDetail: string): Check {
  return failures.length === 0
    ? { name, ok: true, detail: okDetail }
    : { name, ok: false, detail: `${failures.length} failing: ${examples(failures)}` };
}

export async function verify(input: {
  db: Queries;
  dataDir: string;
  calls: PlannedCall[];
  /** Every acknowledged event_id with what was delivered. */
  acknowledged: Map<string, Delivery>;
  /** How many "Recording attached successfully" lines each call got, over every run. */
  attachLogs: Map<string, number>;
  now: number;
}): Promise<Verdict> {
  const { db, dataDir, calls, acknowledged, attachLogs } = input;
  const checks: Check[] = [];

  // 1. Nothing acknowledged is lost.
  const storedIds = new Set((await db.all<{ event_id: string }>('select event_id from events')).map((row) => row.event_id));
  const lostIds = [...acknowledged.keys()].filter((id) => !storedIds.has(id));
  checks.push(check('every acknowledged event_id is in the events table', lostIds, `${acknowledged.size} of ${acknowledged.size}`));

  // 2. Every stored event was applied, and none of ours was refused by the processor.
  const unprocessed = await db.all('select event_id, type, call_id from events where processed_at is null');
  checks.push(check('no event left unprocessed', unprocessed, `${storedIds.size} stored, all processed`));
  const errored = await db.all('select event_id, call_id, processing_error from events where processing_error is not null');
  checks.push(check('no event kept with a processing error', errored, 'none'));

  // 3. Every call whose READY was acknowledged is attached, with the very bytes storage served.
  const rows = new Map((await db.all<CallRow>('select * from calls')).map((row) => [row.call_id, row]));
  const readyCalls = new Set([...acknowledged.values()].filter((d) => d.ready && d.callId !== null).map((d) => d.callId as string));
  const recordingsDir = path.join(dataDir, 'recordings');
  const badAttachments: unknown[] = [];
  for (const call of calls) {
    if (!readyCalls.has(call.callId)) continue;
    const row = rows.get(call.callId);
    const source = call.source;
    if (!row || !source || row.attachment_state !== 'attached' || row.recording_key === null) {
      badAttachments.push({ call: call.callId, kind: call.kind, state: row?.attachment_state ?? 'missing', reason: row?.attachment_reason ?? null });
      continue;
    }
    const file = path.join(recordingsDir, row.recording_key);
    if (!fs.existsSync(file)) {
      badAttachments.push({ call: call.callId, missingFile: row.recording_key });
      continue;
    }
    const bytes = fs.readFileSync(file);
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    if (sha256 !== source.fixture.sha256 || row.recording_sha256 !== sha256 || row.recording_size !== bytes.length) {
      badAttachments.push({ call: call.callId, fixture: source.fixture.name, fileSha256: sha256, dbSha256: row.recording_sha256, size: bytes.length });
    }
  }
  checks.push(check('every READY call is attached with a file whose sha256 matches the source', badAttachments, `${readyCalls.size} calls`));

  // 4. Attached exactly once: a second "attached" means a second attach committed for the call.
  const duplicates = [...attachLogs].filter(([, count]) => count > 1).map(([call, count]) => `${call} ×${count}`);
  checks.push(check('no call attached more than once', duplicates, `${attachLogs.size} attach log lines, one per call`));

  // 5. The calls that never got READY end where their events say.
  const wrongStates = calls
    .filter((call) => !readyCalls.has(call.callId))
    .map((call) => ({ call, row: rows.get(call.callId) }))
    .filter(({ call, row }) => row?.attachment_state !== call.expected)
    .map(({ call, row }) => ({ call: call.callId, kind: call.kind, expected: call.expected, state: row?.attachment_state ?? 'missing', reason: row?.attachment_reason }));
  checks.push(check('calls without READY end empty / disabled / none / failed as their events say', wrongStates, `${calls.length - readyCalls.size} calls`));

  // 6. No partial download survives (after the final clean stop, no process's temp area is
  //    left either), and no recording file is without a call.
  const tmpDir = path.join(recordingsDir, '.tmp');
  const leftovers = fs.existsSync(tmpDir) ? (fs.readdirSync(tmpDir, { recursive: true }) as string[]) : [];
  checks.push(check('nothing left under recordings/.tmp (no partial .part file, no temp area) after the final clean stop', leftovers, 'empty'));
  const referenced = new Set([...rows.values()].map((row) => row.recording_key).filter((key): key is string => key !== null));
  const files = fs.existsSync(recordingsDir)
    ? fs.readdirSync(recordingsDir, { withFileTypes: true }).filter((entry) => entry.isFile()).map((entry) => entry.name)
    : [];
  const orphans = files.filter((name) => !referenced.has(name));
  checks.push(check('no orphan recording files (every file is a call\'s recording_key)', orphans, `${files.length} files, all referenced`));
  const missing = [...referenced].filter((key) => !files.includes(key));
  checks.push(check('every recording_key has its file', missing, `${referenced.size} keys`));

  // 7. No job stuck: after quiescence no lease is held, no job outlives its call's wait, and
  //    no pending call has lost its job (it would never be fetched).
  const jobs = await db.all<JobRow>('select * from fetch_jobs');
  checks.push(check('no fetch job holds a lease after quiescence', jobs.filter((job) => job.locked_until !== null), 'none'));
  const jobless = [...rows.values()].filter((row) => row.attachment_state === 'pending' && !jobs.some((job) => job.call_id === row.call_id));
  checks.push(check('no pending call without a fetch job', jobless.map((row) => ({ call: row.call_id, record_status: row.record_status })), 'none'));
  const overdue = jobs.filter((job) => job.locked_until === null && job.run_at < input.now - OVERDUE_MS);
  checks.push(check(`no fetch job left unclaimed more than ${OVERDUE_MS / 1000}s past its run_at`, overdue, 'none'));
  const stale = jobs.filter((job) => rows.get(job.call_id)?.attachment_state !== 'pending');
  checks.push(check('no fetch job left for a call that is no longer pending', stale, 'none'));

  // 8. Heartbeats reached the devices table.
  const devices = new Set((await db.all<{ device_id: string }>('select device_id from devices')).map((row) => row.device_id));
  const heard = new Set([...acknowledged.values()].map((d) => d.deviceId).filter((id): id is string => id !== null));
  checks.push(check('every device that sent a heartbeat is in the devices table', [...heard].filter((id) => !devices.has(id)), `${heard.size} devices`));

  return { checks, lost: lostIds.length, duplicated: duplicates.length, stored: storedIds.size };
}
