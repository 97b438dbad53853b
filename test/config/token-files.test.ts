import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { resolveToken } from '../../src/config/token-files.ts';

const tempDir = () => fs.mkdtempSync(path.join(os.tmpdir(), 'token-files-'));

describe('resolveToken', () => {
  it('makes one token when many starts race on one DATA_DIR, and all of them get it', async () => {
    const dataDir = tempDir();
    const resolved = await Promise.all(Array.from({ length: 20 }, () => resolveToken(dataDir, 'webhook', undefined)));
    const tokens = new Set(resolved.map((entry) => entry.token));
    expect(tokens.size).toBe(1);
    expect(resolved.filter((entry) => entry.generated)).toHaveLength(1);
    expect(fs.readFileSync(path.join(dataDir, 'webhook-token'), 'utf8')).toBe(`${[...tokens][0]}\n`);
    // No draft is left behind.
    expect(fs.readdirSync(dataDir)).toEqual(['webhook-token']);
  });

  it('keeps the API and webhook tokens apart', async () => {
    const dataDir = tempDir();
    const api = await resolveToken(dataDir, 'api', undefined);
    const webhook = await resolveToken(dataDir, 'webhook', undefined);
    expect(api.token).not.toBe(webhook.token);
    expect(fs.readdirSync(dataDir).sort()).toEqual(['api-token', 'webhook-token']);
  });

  it('uses the configured token and writes nothing', async () => {
    const dataDir = tempDir();
    expect(await resolveToken(dataDir, 'api', 'configured-123')).toEqual({ token: 'configured-123', generated: false });
    expect(fs.readdirSync(dataDir)).toEqual([]);
  });

  it('refuses a token file too short to be a token, rather than replacing it', async () => {
    const dataDir = tempDir();
    fs.writeFileSync(path.join(dataDir, 'api-token'), 'short\n');
    await expect(resolveToken(dataDir, 'api', undefined)).rejects.toThrow(/api-token exists but holds no token of at least 8 characters/);
    expect(fs.readFileSync(path.join(dataDir, 'api-token'), 'utf8')).toBe('short\n');
  });
});
