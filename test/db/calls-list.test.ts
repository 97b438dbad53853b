import { sql } from 'kysely';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/config.ts';
import { createDb, migrateToLatest, type Db } from '../../src/db/database.ts';
import { selectCallPage, type CallPageQuery } from '../../src/db/calls-repository.ts';
import { makeDataDir } from '../support/service-harness.ts';
import { databaseEnvironment, ensureDatabase, testDialect } from '../support/test-database.ts';

let db: Db;

beforeEach(async () => {
  const env = { DATA_DIR: await makeDataDir(), ...databaseEnvironment() };
  await ensureDatabase(env);
  db = createDb(loadConfig(env).database);
  await migrateToLatest(db);
});
afterEach(async () => {
  await db.destroy();
});

const page = (filters: Omit<CallPageQuery, 'limit'>): CallPageQuery => ({ limit: 50, ...filters });
const after = { firstSeenAt: 5_000_000, callId: 'call-5000' };

/** The list's queries, each with the index its plan must walk, newest first, without sorting what it reads. */
const listQueries = () =>
  [
    [page({}), 'calls_newest'],
    [page({ after }), 'calls_newest'],
    [page({ since: 1_000_000, until: 2_000_000 }), 'calls_newest'],
    [page({ state: 'failed' }), 'calls_state_newest'],
    [page({ direction: 'outgoing' }), 'calls_direction_newest'],
    [page({ direction: 'outgoing', after }), 'calls_direction_newest'],
    [page({ outcome: 'rejected' }), 'calls_outcome_newest'],
    [page({ outcome: 'rejected', since: 1_000_000 }), 'calls_outcome_newest'],
    [page({ deviceId: 'device-7' }), 'calls_device_newest'],
    [page({ peerPhone: '+5511900000042' }), 'calls_peer_phone_newest'],
  ] as const;

/** The phone filter is either of two columns: each through its own index, then the few matches sorted. */
const phoneQuery = () => selectCallPage(db, page({ phone: '+5511900000042' }));
/** The search by id prefix: a range of the ids' index (bytewise), then the few matches sorted. */
const callIdPrefixQuery = () => selectCallPage(db, page({ callIdPrefix: 'call-1234' }));

describe(`the call list in ${testDialect === 'sqlite' ? 'SQLite' : 'PostgreSQL'}`, () => {
  // EXPLAIN QUERY PLAN and its wording are SQLite's. With no statistics its planner picks these
  // indexes whatever the table holds.
  it.skipIf(testDialect !== 'sqlite')('walks an index for every filter, so a page costs its size, not the table', async () => {
    for (const [query, index] of listQueries()) {
      const details = await sqlitePlan(selectCallPage(db, query));
      expect(details, JSON.stringify(query)).toMatch(new RegExp(`USING (COVERING )?INDEX ${index}\\b`));
      expect(details, JSON.stringify(query)).not.toMatch(/TEMP B-TREE|SCAN calls(?! USING)/);
    }
    const phone = await sqlitePlan(phoneQuery());
    expect(phone).toMatch(/MULTI-INDEX OR/);
    expect(phone).toMatch(/INDEX calls_peer_phone_newest\b/);
    expect(phone).toMatch(/INDEX calls_device_phone_newest\b/);
    const prefix = await sqlitePlan(callIdPrefixQuery());
    expect(prefix).toMatch(/SEARCH calls USING INDEX sqlite_autoindex_calls_1 \(call_id>\? AND call_id<\?\)/);
  });

  // PostgreSQL's planner goes by statistics: the check stores what a busy service holds and analyzes.
  it.skipIf(testDialect !== 'postgres')('walks an index for every filter once many calls are stored', async () => {
    await sql`insert into calls (call_id, first_seen_at, last_seen_at, attachment_state, device_id, direction_normalized, outcome, peer_phone, device_phone)
      select 'call-' || n, n * 1000, n * 1000, case when n % 100 = 0 then 'failed' else 'attached' end,
        'device-' || (n % 200), case when n % 50 = 0 then 'outgoing' else 'incoming' end,
        case when n % 100 = 1 then 'rejected' else 'answered' end,
        '+55119' || lpad((n % 5000)::text, 8, '0'), '+5566999050312'
      from generate_series(1, 20000) as n`.execute(db);
    await sql`analyze calls`.execute(db);
    for (const [query, index] of listQueries()) {
      const details = await postgresPlan(selectCallPage(db, query));
      // A bitmap scan of the index, then a sort of the few rows it matched, is as good where the filter is selective.
      expect(details, JSON.stringify(query)).toMatch(new RegExp(`Index Scan( Backward)? (using|on) (${index}|calls_newest)\\b`));
      expect(details, JSON.stringify(query)).not.toMatch(/Seq Scan/);
    }
    const phone = await postgresPlan(phoneQuery());
    expect(phone).toMatch(/calls_peer_phone_newest/);
    expect(phone).not.toMatch(/Seq Scan/);
    const prefix = await postgresPlan(callIdPrefixQuery());
    expect(prefix).toMatch(/(Index|Bitmap Index) Scan (using|on) calls_call_id_bytes\b/);
    expect(prefix).not.toMatch(/Seq Scan/);
  });
});

async function sqlitePlan(query: ReturnType<typeof selectCallPage>): Promise<string> {
  const compiled = query.compile();
  const plan = await db.executeQuery<{ detail: string }>({ ...compiled, sql: `explain query plan ${compiled.sql}` });
  return plan.rows.map((row) => row.detail).join('; ');
}

async function postgresPlan(query: ReturnType<typeof selectCallPage>): Promise<string> {
  const compiled = query.compile();
  const plan = await db.executeQuery<{ 'QUERY PLAN': string }>({ ...compiled, sql: `explain ${compiled.sql}` });
  return plan.rows.map((row) => row['QUERY PLAN']).join('\n');
}
