import { randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import SQLite from 'better-sqlite3';
import { AppError } from '../errors.ts';

interface BackupResult {
  bytes: number;
  calls: number;
}

/**
 * A consistent copy of a live SQLite database through SQLite's online backup API (the service
 * goes on writing meanwhile; the copy is one moment of it, WAL included). The copy is written
 * under another name, checked, then renamed: a file at `destination` is always a whole backup.
 */
export async function backupSqliteDatabase(source: string, destination: string): Promise<BackupResult> {
  if (await exists(destination)) {
    throw new AppError(`${destination} already exists: choose another file name (a backup never overwrites one)`, { code: 'BACKUP_EXISTS' });
  }
  if (!(await exists(source))) throw new AppError(`no database at ${source}: check DATA_DIR or DATABASE_URL`, { code: 'NO_DATABASE' });
  const draft = `${destination}.${randomUUID()}.partial`;
  const database = new SQLite(source, { fileMustExist: true });
  try {
    database.pragma('busy_timeout = 5000');
    await database.backup(draft);
  } catch (caught) {
    await fs.rm(draft, { force: true });
    throw caught;
  } finally {
    database.close();
  }
  try {
    const copy = new SQLite(draft, { fileMustExist: true });
    let calls: number;
    try {
      const [check] = copy.pragma('integrity_check') as { integrity_check: string }[];
      if (check?.integrity_check !== 'ok') throw new AppError(`the copy failed SQLite's integrity check: ${check?.integrity_check}`, { code: 'BACKUP_CORRUPT' });
      calls = (copy.prepare('select count(*) as count from calls').get() as { count: number }).count;
    } finally {
      copy.close();
    }
    const handle = await fs.open(draft, 'r');
    await handle.sync().finally(() => handle.close());
    await fs.link(draft, destination);
    return { bytes: (await fs.stat(destination)).size, calls };
  } finally {
    await fs.rm(draft, { force: true });
  }
}

async function exists(file: string): Promise<boolean> {
  return fs.access(file).then(
    () => true,
    () => false,
  );
}
