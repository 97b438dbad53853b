import path from 'node:path';
import Database from 'better-sqlite3';
import { createDb, migrateToLatest } from '../src/db/database.ts';
import { makeDataDir } from '../test/support/service-harness.ts';

const FOUR_HOURS = 4 * 3_600_000;

/** A database as a busy deployment has it: most calls attached, a tenth waiting on polls over 4 hours. */
export async function seedDatabase(calls: number, waiting: number): Promise<string> {
  const dataDir = await makeDataDir();
  const filename = path.join(dataDir, 'wavoip-recordings.sqlite');
  const db = createDb({ dialect: 'sqlite', filename });
  await migrateToLatest(db);
  await db.destroy();
  const sqlite = new Database(filename);
  const now = Date.now();
  const insertCall = sqlite.prepare(
    `insert into calls (call_id, status, was_connected, duration, record_status, first_seen_at, last_seen_at, ended_at, attachment_state,
       device_id, direction_normalized, outcome, peer_phone, device_phone)
     values (?, 'ENDED', 1, 60, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
  );
  const insertJob = sqlite.prepare('insert into fetch_jobs (call_id, run_at, deadline_at, attempts, version) values (?, ?, ?, 0, ?)');
  sqlite.transaction(() => {
    for (let index = 0; index < calls; index++) {
      const callId = `seed-${index}`;
      const isWaiting = index < waiting;
      const seenAt = now - (calls - index) * 1_000;
      // 20 devices, a fifth of calls outgoing, a seventh missed, one in 53 rejected, 5,000 peers:
      // coprime periods, so that no two filters exclude each other.
      const device = index % 20;
      const outcome = index % 7 === 3 ? 'missed' : index % 53 === 1 ? 'rejected' : 'answered';
      insertCall.run(
        callId, isWaiting ? 'MIXING' : 'READY', seenAt, seenAt, seenAt, isWaiting ? 'pending' : 'attached',
        `device-${device}`, index % 5 === 0 ? 'outgoing' : 'incoming', outcome,
        `+55119${String(index % 5000).padStart(8, '0')}`, `+55669990${String(device).padStart(4, '0')}`,
      );
      // Spread over the next four hours, none due during the measurement.
      if (isWaiting) insertJob.run(callId, now + 60_000 + Math.floor((index / waiting) * FOUR_HOURS), now + FOUR_HOURS + 120_000, index);
    }
  })();
  sqlite.close();
  return dataDir;
}
