import path from 'node:path';
import { loadConfig } from '../config/config.ts';
import { backupSqliteDatabase } from '../db/sqlite-backup.ts';
import { AppError } from '../errors.ts';
import { formatBytes } from '../storage/storage-faults.ts';

/** `wavoip-recordings backup <file>`: an online copy of the embedded database. */
export async function backupCommand(file: string): Promise<void> {
  const config = loadConfig();
  if (config.database.dialect !== 'sqlite') {
    throw new AppError('DATABASE_URL is PostgreSQL: back it up with pg_dump (see docs/deployment.md); this command copies the embedded SQLite database', {
      code: 'NOT_SQLITE',
    });
  }
  const destination = path.resolve(file);
  const { bytes, calls } = await backupSqliteDatabase(config.database.filename, destination);
  process.stdout.write(`Backed up ${config.database.filename} to ${destination}: ${formatBytes(bytes)}, ${calls} call${calls === 1 ? '' : 's'}.\n`);
}
