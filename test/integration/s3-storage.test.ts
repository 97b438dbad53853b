import fs from 'node:fs';
import path from 'node:path';
import { DeleteObjectCommand, HeadObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { recordingKeyFor } from '../../src/storage/recording-store.ts';
import { startFakeWavoipStorage, type FakeWavoipStorage } from '../support/fake-wavoip-storage.ts';
import { S3RVER_CREDENTIALS, startS3rver, type RunningS3rver } from '../support/s3rver.ts';
import { makeDataDir, startInProcessService, testEnvironment, waitFor, type InProcessService } from '../support/service-harness.ts';

const mp3 = fs.readFileSync(new URL('../fixtures/audio/call-pt-br-9s.mp3', import.meta.url));
const ogg = fs.readFileSync(new URL('../fixtures/audio/call-pt-br-9s.ogg', import.meta.url));

let s3: RunningS3rver;
let storage: FakeWavoipStorage;
let service: InProcessService;
let inspector: S3Client;
/** The files under DATA_DIR/tmp, in whichever process's area. */
const localTempFiles = () =>
  fs.readdirSync(path.join(service.dataDir, 'tmp'), { recursive: true, withFileTypes: true }).filter((entry) => entry.isFile()).map((entry) => entry.name);
const savedCredentials = { id: process.env.AWS_ACCESS_KEY_ID, secret: process.env.AWS_SECRET_ACCESS_KEY };

beforeAll(async () => {
  s3 = await startS3rver(['recordings']);
  storage = await startFakeWavoipStorage();
  inspector = new S3Client({ endpoint: s3.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: S3RVER_CREDENTIALS });
  // loadConfig reads the env handed to it, but the credentials are the AWS SDK's to find, in
  // process.env, as in production: the service never sees or stores them.
  process.env.AWS_ACCESS_KEY_ID = S3RVER_CREDENTIALS.accessKeyId;
  process.env.AWS_SECRET_ACCESS_KEY = S3RVER_CREDENTIALS.secretAccessKey;
  service = await startInProcessService(
    testEnvironment(storage.origin, await makeDataDir(), {
      RECORDINGS_STORAGE: 's3://recordings/calls',
      S3_ENDPOINT: s3.endpoint,
      S3_FORCE_PATH_STYLE: 'true',
      S3_REGION: 'us-east-1',
    }),
  );
});

afterAll(async () => {
  await service?.stop();
  await storage?.close();
  inspector?.destroy();
  await s3?.dispose();
  for (const [name, value] of [['AWS_ACCESS_KEY_ID', savedCredentials.id], ['AWS_SECRET_ACCESS_KEY', savedCredentials.secret]] as const) {
    if (value === undefined) delete process.env[name];
    else process.env[name] = value;
  }
});

async function postReady(callId: string, body: Buffer, contentType: string): Promise<void> {
  storage.setRoute(`/${callId}`, { kind: 'body', body, contentType });
  const response = await service.postWebhook({ type: 'RECORD', whatsapp_call_id: callId, record_status: 'READY', record_url: storage.url(`/${callId}`) });
  expect(response.status).toBe(200);
}

async function readyz(): Promise<{ status: number; body: unknown }> {
  const response = await fetch(`${service.url}/readyz`);
  return { status: response.status, body: await response.json() };
}

describe('recordings in S3 (RECORDINGS_STORAGE=s3://recordings/calls)', () => {
  it('uploads a READY recording under the prefix, verified, and keeps nothing on local disk', async () => {
    await postReady('S3-CALL-1', mp3, 'audio/mpeg');
    const call = await service.waitForAttachment('S3-CALL-1', 'attached');
    expect(call.attachment).toMatchObject({ size: mp3.length, content_type: 'audio/mpeg' });

    const key = `calls/${recordingKeyFor('S3-CALL-1', call.attachment.sha256 as string, 'mp3')}`;
    expect((await inspector.send(new HeadObjectCommand({ Bucket: 'recordings', Key: key }))).ContentLength).toBe(mp3.length);
    // The one object for this call is that one (other tests' recordings share the bucket).
    const listing = await inspector.send(new ListObjectsV2Command({ Bucket: 'recordings' }));
    expect((listing.Contents ?? []).map((object) => object.Key).filter((each) => each?.includes('S3-CALL-1'))).toEqual([key]);
    // Downloaded to DATA_DIR/tmp (this process's area there), uploaded, and gone from there; no
    // local recordings directory.
    expect(localTempFiles()).toEqual([]);
    expect(fs.existsSync(path.join(service.dataDir, 'recordings'))).toBe(false);
  });

  it('serves the recording from S3: whole, as a Range, and HEAD', async () => {
    await postReady('S3-SERVED', mp3, 'audio/mpeg');
    await service.waitForAttachment('S3-SERVED', 'attached');
    const whole = await service.api('/api/calls/S3-SERVED/recording');
    expect(whole.status).toBe(200);
    expect(whole.headers.get('content-type')).toBe('audio/mpeg');
    expect(whole.headers.get('content-length')).toBe(String(mp3.length));
    expect(Buffer.from(await whole.arrayBuffer()).equals(mp3)).toBe(true);

    for (const [range, start, end] of [
      ['bytes=0-99', 0, 99],
      ['bytes=1000-2047', 1000, 2047],
      ['bytes=-1', mp3.length - 1, mp3.length - 1],
    ] as const) {
      const partial = await service.api('/api/calls/S3-SERVED/recording', { headers: { range } });
      expect(partial.status).toBe(206);
      expect(partial.headers.get('content-range')).toBe(`bytes ${start}-${end}/${mp3.length}`);
      expect(Buffer.from(await partial.arrayBuffer()).equals(mp3.subarray(start, end + 1))).toBe(true);
    }

    const head = await service.api('/api/calls/S3-SERVED/recording', { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers.get('content-length')).toBe(String(mp3.length));
    expect(head.headers.get('content-type')).toBe('audio/mpeg');
  });

  it('answers 404 when the object is gone from the bucket, as for a missing local file', async () => {
    await postReady('S3-CALL-GONE', mp3, 'audio/mpeg');
    const call = await service.waitForAttachment('S3-CALL-GONE', 'attached');
    const key = recordingKeyFor('S3-CALL-GONE', call.attachment.sha256 as string, 'mp3');
    await inspector.send(new DeleteObjectCommand({ Bucket: 'recordings', Key: `calls/${key}` }));
    const response = await service.api('/api/calls/S3-CALL-GONE/recording');
    expect(response.status).toBe(404);
    expect(response.headers.get('content-type')).toMatch(/application\/json/);
  });

  it('reports the storage ok on /readyz', async () => {
    expect(await readyz()).toEqual({ status: 200, body: { status: 'ready', database: 'ok', storage: 'ok' } });
  });

  it('while S3 is down, retries the upload with the S3 reason as last_error and /readyz degraded; attaches once S3 is back', async () => {
    await s3.stop();
    try {
      await postReady('S3-CALL-2', ogg, 'audio/ogg');
      let lastError: unknown;
      await waitFor(async () => {
        // The webhook is acknowledged before it is applied: the call may not exist yet.
        const response = await service.api('/api/calls/S3-CALL-2');
        if (response.status !== 200) return false;
        const view = ((await response.json()) as { attachment: Record<string, unknown> }).attachment;
        lastError = view.last_error;
        return view.state === 'pending' && typeof lastError === 'string';
      }, 'a failed upload to be rescheduled');
      expect(lastError).toMatch(
        /^Recording storage \(S3\) could not be reached \(connect ECONNREFUSED 127\.0\.0\.1:\d+\): could not upload s3:\/\/recordings\/calls\/S3-CALL-2-[0-9a-f]{16}-[0-9a-f]{16}\.opus$/,
      );
      expect(String(lastError)).not.toContain(S3RVER_CREDENTIALS.secretAccessKey);

      // A success is reused for a few seconds, so the change shows on the next real probe.
      await waitFor(async () => ((await readyz()).body as { status: string }).status === 'degraded', '/readyz degraded');
      expect(await readyz()).toEqual({ status: 200, body: { status: 'degraded', database: 'ok', storage: 'unavailable' } });
      expect(service.logs().some((line) => /Readiness check failed: recording storage: Recording storage \(S3\) could not be reached/.test(line.msg))).toBe(true);
      // Webhooks are still taken.
      expect((await service.postWebhook({ type: 'CALL', whatsapp_call_id: 'S3-DOWN-CALL', status: 'ACTIVE' })).status).toBe(200);
    } finally {
      await s3.start();
    }

    const call = await service.waitForAttachment('S3-CALL-2', 'attached');
    expect(call.attachment.size).toBe(ogg.length);
    const response = await service.api('/api/calls/S3-CALL-2/recording');
    expect(Buffer.from(await response.arrayBuffer()).equals(ogg)).toBe(true);
    expect(localTempFiles()).toEqual([]);
    expect(await readyz()).toEqual({ status: 200, body: { status: 'ready', database: 'ok', storage: 'ok' } });
  });
});
