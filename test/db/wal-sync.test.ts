import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { createWalSync } from '../../src/db/database.ts';
import { makeDataDir } from '../support/service-harness.ts';
import { testDialect } from '../support/test-database.ts';

// The WAL file is SQLite's: on PostgreSQL createWalSync does nothing (the server syncs its own log).
describe.skipIf(testDialect !== 'sqlite')('createWalSync', () => {
  it('recovers when the WAL could not be opened yet, instead of failing every later ack', async () => {
    const filename = path.join(await makeDataDir(), 'db.sqlite');
    const walSync = createWalSync({ dialect: 'sqlite', filename });
    await expect(walSync.sync()).rejects.toMatchObject({ code: 'ENOENT' });
    fs.writeFileSync(`${filename}-wal`, '');
    await expect(walSync.sync()).resolves.toBeUndefined();
    expect(() => walSync.assertHealthy()).not.toThrow();
    await walSync.close();
  });
});
