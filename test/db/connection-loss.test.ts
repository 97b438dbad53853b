import { sql } from 'kysely';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/config.ts';
import { createDb, isDatabaseUnavailable, type Db } from '../../src/db/database.ts';
import { makeDataDir } from '../support/service-harness.ts';
import { startTcpProxy, type TcpProxy } from '../support/tcp-proxy.ts';
import { databaseEnvironment, ensureDatabase, testDialect } from '../support/test-database.ts';

/**
 * A PostgreSQL connection lost while the service holds it. The pg client then emits 'error', and
 * an 'error' with no listener ends the process: the loss must reach the query, not crash.
 */
let proxy: TcpProxy;
let db: Db;

beforeEach(async () => {
  if (testDialect !== 'postgres') return;
  const env: Record<string, string> = { DATA_DIR: await makeDataDir(), ...databaseEnvironment() };
  await ensureDatabase(env);
  const direct = new URL(env.DATABASE_URL!);
  proxy = await startTcpProxy({ host: direct.hostname, port: Number(direct.port || 5432) });
  direct.port = String(proxy.port);
  db = createDb(loadConfig({ ...env, DATABASE_URL: direct.toString() }).database);
});
afterEach(async () => {
  await db?.destroy();
  await proxy?.close();
});

describe.skipIf(testDialect !== 'postgres')('a PostgreSQL connection lost', () => {
  it('between the statements of a transaction: the transaction fails, the process goes on, and the next query reconnects', async () => {
    const transaction = db.transaction().execute(async (trx) => {
      await sql`select 1`.execute(trx);
      // The connection is checked out and idle here, as while a transaction awaits other work.
      proxy.cut();
      await new Promise((resolve) => setTimeout(resolve, 200));
      await sql`select 2`.execute(trx);
    });
    const failure = await transaction.then(() => null, (caught: unknown) => caught);
    expect(isDatabaseUnavailable(failure)).toBe(true);

    proxy.restore();
    const { rows } = await sql<{ answer: number }>`select 42 as answer`.execute(db);
    expect(rows).toEqual([{ answer: 42 }]);
  });

  it('while idle in the pool: the next query gets a fresh connection', async () => {
    await sql`select 1`.execute(db);
    proxy.cut();
    await new Promise((resolve) => setTimeout(resolve, 200));
    proxy.restore();
    const { rows } = await sql<{ answer: number }>`select 42 as answer`.execute(db);
    expect(rows).toEqual([{ answer: 42 }]);
  });
});
