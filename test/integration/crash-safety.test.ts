import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/**
 * `npm run test:crash` at CI size, as its own process: the script starts, SIGKILLs and restarts
 * the service itself, and its exit code is the verdict. Its output is kept in the failure
 * message, since that is where the failing check and the seed to replay it are.
 */
it('loses no acknowledged webhook and attaches every READY recording exactly once across SIGKILLs', async () => {
  const child = spawn(process.execPath, ['--import', 'tsx', 'scripts/crash-test.ts', '--events', '600', '--kills', '3'], {
    cwd: REPO_ROOT,
    // The script gives the service its own settings; nothing from here reaches the service.
    env: process.env,
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
}, 150_000);
