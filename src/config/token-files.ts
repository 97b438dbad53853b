import { randomBytes, randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';

/**
 * The secrets the service makes for itself when they are not set: recordings are personal data,
 * so neither the API nor the webhook is ever open by default. Each is kept in DATA_DIR, readable
 * by its owner only, where the CLI (`webhook-url`, `calls`…) and the operator find it again.
 */
const TOKEN_FILE_NAMES = { api: 'api-token', webhook: 'webhook-token', 'outbound-webhook': 'outbound-webhook-secret' } as const;
export type TokenKind = keyof typeof TOKEN_FILE_NAMES;

export function tokenFile(dataDir: string, kind: TokenKind): string {
  return path.join(dataDir, TOKEN_FILE_NAMES[kind]);
}

export interface ResolvedToken {
  token: string;
  /** Where a generated token is kept; unset when the token came from the environment. */
  file?: string;
  /** Made by this start: the caller says where to find it (never the token itself). */
  generated: boolean;
}

/** `configured` (from the environment) wins; else the token kept in DATA_DIR, made on first start. */
export async function resolveToken(dataDir: string, kind: TokenKind, configured: string | undefined): Promise<ResolvedToken> {
  if (configured !== undefined) return { token: configured, generated: false };
  const file = tokenFile(dataDir, kind);
  const stored = await readStoredToken(file);
  if (stored !== undefined) return { token: stored, file, generated: false };
  // The outbound webhook secret takes the Standard Webhooks form receivers' libraries expect.
  const token = kind === 'outbound-webhook' ? `whsec_${randomBytes(32).toString('base64')}` : randomBytes(24).toString('base64url');
  // Written whole under another name, then linked in: two processes starting together on one
  // DATA_DIR agree on one token, and neither can read a half-written file.
  const draft = `${file}.${randomUUID()}.tmp`;
  await fs.writeFile(draft, `${token}\n`, { mode: 0o600, flag: 'wx' });
  try {
    await fs.link(draft, file);
  } catch (caught) {
    if ((caught as NodeJS.ErrnoException).code !== 'EEXIST') throw caught;
    const winner = await readStoredToken(file);
    if (winner === undefined) throw new Error(`${file} exists but holds no token of at least 8 characters: delete it or fix it`);
    return { token: winner, file, generated: false };
  } finally {
    await fs.rm(draft, { force: true });
  }
  return { token, file, generated: true };
}

/** The token kept in `file`, or undefined when there is none (yet). */
export async function readStoredToken(file: string): Promise<string | undefined> {
  try {
    const stored = (await fs.readFile(file, 'utf8')).trim();
    return stored.length >= 8 ? stored : undefined;
  } catch (caught) {
    if ((caught as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw caught;
  }
}
