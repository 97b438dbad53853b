import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Config } from '../config/config.ts';

/** Where the token generated when API_TOKEN is unset is kept, readable by its owner only. */
export function apiTokenFile(dataDir: string): string {
  return path.join(dataDir, 'api-token');
}

/**
 * Recordings are personal data, so the API is never open: without API_TOKEN a random token
 * is made on first start and kept in DATA_DIR. `generated` tells the caller to show it.
 */
export async function resolveApiToken(config: Config): Promise<{ token: string; file?: string; generated: boolean }> {
  if (config.apiToken !== undefined) return { token: config.apiToken, generated: false };
  const file = apiTokenFile(config.dataDir);
  const stored = await readApiToken(file);
  if (stored !== undefined) return { token: stored, file, generated: false };
  const token = randomBytes(24).toString('base64url');
  await fs.writeFile(file, `${token}\n`, { mode: 0o600 });
  return { token, file, generated: true };
}

/** The token kept in `file`, or undefined when there is none (yet). */
export async function readApiToken(file: string): Promise<string | undefined> {
  try {
    const stored = (await fs.readFile(file, 'utf8')).trim();
    return stored.length >= 8 ? stored : undefined;
  } catch (caught) {
    if ((caught as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw caught;
  }
}
