import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeWavoipStorage, type FakeWavoipStorage } from '../support/fake-wavoip-storage.ts';
import { NO_POLLING, makeDataDir, runCli, startInProcessService, testEnvironment, type InProcessService } from '../support/service-harness.ts';
import { testDialect } from '../support/test-database.ts';
import { sha256 } from '../support/sha256.ts';

const ogg = fs.readFileSync(new URL('../fixtures/audio/call-pt-br-9s.ogg', import.meta.url));

let storage: FakeWavoipStorage;

beforeAll(async () => {
  storage = await startFakeWavoipStorage();
});

afterAll(async () => {
  await storage?.close();
});

describe.skipIf(testDialect !== 'sqlite')('wavoip-recordings backup (SQLite)', () => {
  let service: InProcessService;
  let env: Record<string, string>;

  beforeAll(async () => {
    env = testEnvironment(storage.origin, await makeDataDir(), NO_POLLING);
    service = await startInProcessService(env);
  });

  afterAll(async () => {
    await service?.stop();
  });

  it('copies the live database while webhooks keep arriving, and the copy restores into a fresh DATA_DIR', async () => {
    storage.setRoute('/BACKED-UP', { kind: 'body', body: ogg, contentType: 'audio/ogg' });
    await service.postReady('BACKED-UP', storage.url('/BACKED-UP'));
    expect((await service.waitForAttachment('BACKED-UP')).attachment.state).toBe('attached');
    for (let index = 0; index < 50; index++) {
      expect((await service.postWebhook({ type: 'CALL', whatsapp_call_id: `BEFORE-${index}`, status: 'ENDED', duration: 0 })).status).toBe(200);
    }
    await service.waitForAttachment('BEFORE-49');

    // Webhooks go on while the copy is taken: it holds a consistent moment, whatever it holds.
    let sending = true;
    const during = (async () => {
      let index = 0;
      while (sending) await service.postWebhook({ type: 'RECORD', whatsapp_call_id: `DURING-${index++}`, record_status: 'MIXING' });
      return index;
    })();
    const file = path.join(await makeDataDir(), 'backup.sqlite');
    const result = await runCli(env, 'backup', file);
    sending = false;
    expect(await during).toBeGreaterThan(0);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(new RegExp(`^Backed up .*wavoip-recordings\\.sqlite to ${file.replace(/[.]/g, '\\.')}: [\\d.]+ [KM]iB, \\d+ calls\\.\\n$`));
    expect(fs.readdirSync(path.dirname(file))).toEqual(['backup.sqlite']);

    // Restore as the README says: the file becomes the new DATA_DIR's database, with the recordings beside it.
    const restoredDir = await makeDataDir();
    fs.copyFileSync(file, path.join(restoredDir, 'wavoip-recordings.sqlite'));
    fs.cpSync(path.join(env.DATA_DIR as string, 'recordings'), path.join(restoredDir, 'recordings'), { recursive: true });
    const restored = await startInProcessService(testEnvironment(storage.origin, restoredDir, NO_POLLING));
    try {
      const call = await restored.call('BACKED-UP');
      expect(call.attachment).toMatchObject({ state: 'attached', sha256: sha256(ogg), size: ogg.length });
      const audio = Buffer.from(await (await restored.api('/api/calls/BACKED-UP/recording')).arrayBuffer());
      expect(sha256(audio)).toBe(sha256(ogg));
      for (const index of [0, 25, 49]) expect((await restored.call(`BEFORE-${index}`)).attachment.state).toBe('none');
      expect(storage.requests('/BACKED-UP')).toBe(1);
    } finally {
      await restored.stop();
    }
  });

  it('never overwrites an existing file', async () => {
    const file = path.join(await makeDataDir(), 'existing.sqlite');
    fs.writeFileSync(file, 'keep me');
    const result = await runCli(env, 'backup', file);
    expect(result.code).toBe(1);
    expect(result.stderr).toBe(`wavoip-recordings: ${file} already exists: choose another file name (a backup never overwrites one)\n`);
    expect(fs.readFileSync(file, 'utf8')).toBe('keep me');
  });

  it('says so when there is no database to copy', async () => {
    const empty = await makeDataDir();
    const result = await runCli({ ...env, DATA_DIR: empty }, 'backup', path.join(empty, 'copy.sqlite'));
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^wavoip-recordings: no database at .*wavoip-recordings\.sqlite: check DATA_DIR or DATABASE_URL\n$/);
    expect(fs.readdirSync(empty)).toEqual([]);
  });
});

describe.skipIf(testDialect !== 'postgres')('wavoip-recordings backup (PostgreSQL)', () => {
  it('points to pg_dump instead', async () => {
    const env = testEnvironment(storage.origin, await makeDataDir(), NO_POLLING);
    const result = await runCli(env, 'backup', path.join(env.DATA_DIR as string, 'copy.sqlite'));
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^wavoip-recordings: DATABASE_URL is PostgreSQL: back it up with pg_dump/);
  });
});
