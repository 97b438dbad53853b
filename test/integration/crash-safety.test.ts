import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';
import { databaseEnvironment, testDialect } from '../support/test-database.ts';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/**
 * `npm run test:crash` at CI size, as its own process: the script starts, SIGKILLs and restarts
 * the service itself, and its exit code is the verdict. Its output is kept in the failure
 * message, since that is where the failing check and the seed to replay it are.
 *
 * On PostgreSQL the script gets DATABASE_URL naming a database with this run's prefix: it
 * creates that database and drops it at its end, and the global teardown drops it should the
 * script die first. On SQLite it gets no DATABASE_URL, and uses its own DATA_DIR.
 */
it('loses no acknowledged webhook and attaches every READY recording exactly once across SIGKILLs', async () => {
  const env: NodeJS.ProcessEnv = { ...process.env, ...databaseEnvironment() };
  if (testDialect === 'sqlite') delete env.DATABASE_URL;
  const child = spawn(process.execPath, ['--import', 'tsx', 'scripts/crash-test.ts', '--events', '600', '--kills', '3'], {
    cwd: REPO_ROOT,
    // The script gives the service its own settings, DATABASE_URL aside; nothing else from here
    // reaches the service.
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
  const code = await new Promise<number | null>((resolve) => child.once('close', (exitCode) => resolve(exitCode)));

  expect({ code, output }).toMatchObject({ code: 0 });
  expect(output).toMatch(/^lost\s*=\s*0\b/m);
  expect(output).toMatch(/^duplicated\s*=\s*0\b/m);
  expect(output).toMatch(/^acknowledged\s*=\s*600\b/m);
  expect(output).toMatch(testDialect === 'postgres' ? /^database PostgreSQL postgres:\/\//m : /^database SQLite\b/m);
}, 150_000);
