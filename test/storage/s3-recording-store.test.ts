import { randomBytes, randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { buffer } from 'node:stream/consumers';
import { HeadObjectCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AppError } from '../../src/errors.ts';
import { createS3Client } from '../../src/storage/create-recording-store.ts';
import type { RecordingStore } from '../../src/storage/recording-store.ts';
import { createS3RecordingStore, type S3RecordingStoreOptions } from '../../src/storage/s3-recording-store.ts';
import { freePort } from '../support/free-port.ts';
import { waitFor } from '../support/service-harness.ts';
import { S3RVER_CREDENTIALS, startS3Proxy, startS3rver, type ProxiedRequest, type RunningS3rver, type S3Proxy } from '../support/s3rver.ts';
import { sha256 } from '../support/sha256.ts';

const MiB = 1024 * 1024;
const PART_SIZE = 5 * MiB;
/** Three parts of 5, 5 and 2 MiB. */
const large = randomBytes(12 * MiB);

let s3: RunningS3rver;
let proxy: S3Proxy;
/** Straight to s3rver, to look at what the store left in the bucket. */
let inspector: S3Client;
let tmpDir: string;
let store: RecordingStore;

function clientFor(endpoint: string, credentials: { accessKeyId: string; secretAccessKey: string } = S3RVER_CREDENTIALS): S3Client {
  return createS3Client({ kind: 's3', bucket: 'recordings', prefix: 'calls/', endpoint, region: 'us-east-1', forcePathStyle: true }, { credentials });
}

function storeFor(endpoint: string, options: Partial<S3RecordingStoreOptions> & { credentials?: { accessKeyId: string; secretAccessKey: string } } = {}): Promise<RecordingStore> {
  const { credentials, ...rest } = options;
  return createS3RecordingStore({ client: clientFor(endpoint, credentials), bucket: 'recordings', prefix: 'calls/', tmpDir, partSize: PART_SIZE, checkCacheMs: 0, ...rest });
}

async function writeTemp(name: string, content: Buffer | string): Promise<string> {
  const path = join(store.tmpDir, name);
  await writeFile(path, content);
  return path;
}

async function objectKeys(prefix = ''): Promise<string[]> {
  const listing = await inspector.send(new ListObjectsV2Command({ Bucket: 'recordings', Prefix: prefix }));
  return (listing.Contents ?? []).map((object) => object.Key as string).sort();
}

async function headStatus(key: string): Promise<number> {
  try {
    await inspector.send(new HeadObjectCommand({ Bucket: 'recordings', Key: key }));
    return 200;
  } catch (error) {
    return (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode ?? 0;
  }
}

async function failure(promise: Promise<unknown>): Promise<AppError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(AppError);
    return error as AppError;
  }
  throw new Error('expected a failure');
}

const isPart = (partNumber: number) => (request: ProxiedRequest) =>
  request.method === 'PUT' && new URL(request.url, 'http://s3').searchParams.get('partNumber') === String(partNumber);
const uploadIdOf = (request: ProxiedRequest) => new URL(request.url, 'http://s3').searchParams.get('uploadId');

beforeAll(async () => {
  s3 = await startS3rver(['recordings']);
  proxy = await startS3Proxy(s3.endpoint);
  inspector = clientFor(s3.endpoint);
});

afterAll(async () => {
  inspector?.destroy();
  await proxy?.close();
  await s3?.dispose();
});

beforeEach(async () => {
  tmpDir = await mkdtemp(join(tmpdir(), 's3-store-test-'));
  proxy.heal();
  proxy.requests.length = 0;
  store = await storeFor(proxy.endpoint);
});

afterEach(async () => {
  await store.close();
  await rm(tmpDir, { recursive: true, force: true });
});

describe('S3 recording store: put', () => {
  it('uploads a small recording with one PutObject under the prefix, verifies it, and leaves no temp file', async () => {
    await store.put(await writeTemp('a.part', 'hello recording'), 'small-1.ogg');

    expect(proxy.requests.map((request) => `${request.method} ${request.url}`)).toEqual([
      'PUT /recordings/calls/small-1.ogg?x-id=PutObject',
      // The verification: the committed object must have the file's length.
      'HEAD /recordings/calls/small-1.ogg',
    ]);
    expect(await objectKeys('calls/small-1')).toEqual(['calls/small-1.ogg']);
    expect(await store.stat('small-1.ogg')).toEqual({ size: 15 });
    expect((await buffer((await store.openRead('small-1.ogg'))!)).toString()).toBe('hello recording');
    expect(await readdir(store.tmpDir)).toEqual([]);
  });

  it('uploads a large recording as a multipart upload, every part with its SHA-256 signed, and reads it back byte for byte', async () => {
    await store.put(await writeTemp('b.part', large), 'large-1.ogg');

    const parts = proxy.requests.filter((request) => request.url.includes('x-id=UploadPart'));
    expect(proxy.requests.filter((request) => request.url.includes('?uploads'))).toHaveLength(1);
    expect(parts.map((part) => new URL(part.url, 'http://s3').searchParams.get('partNumber')).sort()).toEqual(['1', '2', '3']);
    // S3 (and MinIO) check each body against this hash and refuse a part that differs.
    for (const part of parts) {
      const partNumber = Number(new URL(part.url, 'http://s3').searchParams.get('partNumber'));
      const slice = large.subarray((partNumber - 1) * PART_SIZE, partNumber * PART_SIZE);
      expect(part.headers['x-amz-content-sha256']).toBe(sha256(slice));
    }
    // CompleteMultipartUpload, after every part: the object appears only then.
    const complete = proxy.requests.findIndex((request) => request.method === 'POST' && uploadIdOf(request) !== null);
    expect(complete).toBeGreaterThan(Math.max(...parts.map((part) => proxy.requests.indexOf(part))));

    expect(await store.stat('large-1.ogg')).toEqual({ size: large.length });
    expect(sha256(await buffer((await store.openRead('large-1.ogg'))!))).toBe(sha256(large));
    expect(await readdir(store.tmpDir)).toEqual([]);
  });

  it('reads inclusive byte ranges: the first bytes, across a part boundary, the last byte', async () => {
    await store.put(await writeTemp('c.part', large), 'large-2.ogg');
    const read = async (start: number, end: number) => buffer((await store.openRead('large-2.ogg', { start, end }))!);

    expect((await read(0, 99)).equals(large.subarray(0, 100))).toBe(true);
    expect((await read(PART_SIZE - 10, PART_SIZE + 9)).equals(large.subarray(PART_SIZE - 10, PART_SIZE + 10))).toBe(true);
    expect((await read(large.length - 1, large.length - 1)).equals(large.subarray(large.length - 1))).toBe(true);
  });

  it('replaces an earlier object under the same key', async () => {
    await store.put(await writeTemp('a.part', 'first'), 'same-1.ogg');
    await store.put(await writeTemp('b.part', 'second!'), 'same-1.ogg');
    expect((await buffer((await store.openRead('same-1.ogg'))!)).toString()).toBe('second!');
  });

  it('fails clearly and retryably when S3 cannot be reached, and keeps the temp file for the job to discard', async () => {
    const down = await storeFor(`http://127.0.0.1:${await freePort()}`);
    const temp = await writeTemp('a.part', 'hello');
    const error = await failure(down.put(temp, 'unreachable-1.ogg'));
    expect(error).toMatchObject({ code: 'STORAGE_S3', retryable: true });
    expect(error.message).toMatch(/^Recording storage \(S3\) could not be reached \(connect ECONNREFUSED .*\): could not upload s3:\/\/recordings\/calls\/unreachable-1\.ogg$/);
    expect(await readdir(store.tmpDir)).toEqual(['a.part']);
    await down.discardTemp(temp);
    expect(await readdir(store.tmpDir)).toEqual([]);
    await down.close();
  });
});

describe('S3 recording store: an upload cut part-way', () => {
  it('leaves nothing under the key when a part keeps failing, and aborts the multipart upload', async () => {
    // Part 2 loses its connection after 1 MiB, every time (the SDK's own retries included).
    proxy.cutWhen(isPart(2), MiB);
    const error = await failure(store.put(await writeTemp('b.part', large), 'cut-1.ogg'));

    expect(error).toMatchObject({ code: 'STORAGE_S3', retryable: true });
    expect(error.message).toMatch(/^Recording storage \(S3\) dropped the connection \(.+\): could not upload s3:\/\/recordings\/calls\/cut-1\.ogg/);
    expect(error.message).not.toContain(S3RVER_CREDENTIALS.secretAccessKey);
    expect(await headStatus('calls/cut-1.ogg')).toBe(404);
    expect(await store.stat('cut-1.ogg')).toBeNull();
    // The parts went up under one upload id, and that upload was aborted. (s3rver answers
    // AbortMultipartUpload with 405 and has no ListMultipartUploads, so what is left of the
    // upload inside s3rver cannot be listed; AWS and MinIO delete the parts.)
    const uploadIds = new Set(proxy.requests.filter(isPart(1)).map(uploadIdOf));
    expect(uploadIds.size).toBe(1);
    const aborts = proxy.requests.filter((request) => request.method === 'DELETE' && request.url.includes('x-id=AbortMultipartUpload'));
    expect(aborts.map(uploadIdOf)).toEqual([...uploadIds]);
  });

  it('leaves nothing under the key when S3 goes away mid-upload, and aborts the upload once S3 is back', async () => {
    // From 1 MiB into part 2 on, every connection is refused: the abort cannot get through.
    proxy.cutWhen(isPart(2), MiB, { everything: true });
    const error = await failure(store.put(await writeTemp('b.part', large), 'cut-2.ogg'));
    expect(error).toMatchObject({ code: 'STORAGE_S3', retryable: true });
    expect(error.message).toMatch(/could not upload s3:\/\/recordings\/calls\/cut-2\.ogg; its incomplete multipart upload \(no object, only parts\) is aborted later$/);
    const uploadId = uploadIdOf(proxy.requests.find(isPart(1))!);
    const abortsOf = () => proxy.requests.filter((request) => request.method === 'DELETE' && uploadIdOf(request) === uploadId);
    const failedAborts = abortsOf().length;
    expect(failedAborts).toBeGreaterThan(0);

    proxy.heal();
    expect(await headStatus('calls/cut-2.ogg')).toBe(404);
    await store.check();
    expect(abortsOf().length).toBeGreaterThan(failedAborts);
    // Tried once more at most: a server that refuses it (s3rver) is not asked for ever.
    const afterRetry = abortsOf().length;
    await store.check();
    expect(abortsOf().length).toBe(afterRetry);
  });
});

describe('S3 recording store: an interrupted upload (shutdown)', () => {
  it('rejects at once when its signal fires, leaving nothing under the key, and aborts the multipart upload', async () => {
    proxy.holdWhen(isPart(2));
    const controller = new AbortController();
    const putting = failure(store.put(await writeTemp('b.part', large), 'interrupted-1.ogg', controller.signal));
    await waitFor(() => proxy.requests.some(isPart(2)), 'part 2 to be on its way');
    controller.abort();

    const error = await putting;
    expect(error).toMatchObject({ code: 'STORAGE_S3', retryable: true });
    expect(error.message).toMatch(/^Recording storage \(S3\) upload was interrupted: could not upload s3:\/\/recordings\/calls\/interrupted-1\.ogg/);
    proxy.heal();
    expect(await headStatus('calls/interrupted-1.ogg')).toBe(404);
    const uploadId = uploadIdOf(proxy.requests.find(isPart(1))!);
    expect(proxy.requests.some((request) => request.method === 'DELETE' && uploadIdOf(request) === uploadId)).toBe(true);
  });

  it('uploads nothing when its signal has already fired', async () => {
    const controller = new AbortController();
    controller.abort();
    await expect(store.put(await writeTemp('a.part', 'hello'), 'interrupted-2.ogg', controller.signal)).rejects.toMatchObject({ code: 'STORAGE_S3' });
    // Only this key: a part the test above held back may still arrive now.
    expect(proxy.requests.filter((request) => request.method === 'PUT' && request.url.includes('interrupted-2.ogg'))).toEqual([]);
  });
});

describe('S3 recording store: stat, read, remove', () => {
  it('returns null from stat and openRead for a missing key', async () => {
    expect(await store.stat('missing.ogg')).toBeNull();
    expect(await store.openRead('missing.ogg')).toBeNull();
    expect(await store.openRead('missing.ogg', { start: 0, end: 9 })).toBeNull();
  });

  it('removes an object, and removing it again (or one never stored) is fine', async () => {
    await store.put(await writeTemp('a.part', 'x'), 'remove-1.ogg');
    await store.remove('remove-1.ogg');
    await store.remove('remove-1.ogg');
    await store.remove('never-stored.ogg');
    expect(await store.stat('remove-1.ogg')).toBeNull();
    expect(await headStatus('calls/remove-1.ogg')).toBe(404);
  });

  it('refuses keys that would leave the prefix', async () => {
    const temp = await writeTemp('a.part', 'x');
    await expect(store.put(temp, '../evil.ogg')).rejects.toMatchObject({ code: 'INVALID_KEY' });
    await expect(store.stat('../secret.ogg')).rejects.toMatchObject({ code: 'INVALID_KEY' });
    await expect(store.openRead('../secret.ogg')).rejects.toMatchObject({ code: 'INVALID_KEY' });
    await expect(store.remove('../secret.ogg')).rejects.toMatchObject({ code: 'INVALID_KEY' });
    expect(proxy.requests).toEqual([]);
  });

  it('cleans the temp area of a dead process, not its own, and counts the partial downloads', async () => {
    const dead = join(tmpDir, randomUUID());
    await mkdir(dead);
    await writeFile(join(dead, 'killed-mid-download.part'), 'partial');
    await writeTemp('downloading.part', 'partial');
    await writeFile(join(tmpDir, 'not-ours.txt'), 'keep');
    expect(await store.cleanTemp()).toBe(1);
    expect((await readdir(tmpDir)).sort()).toEqual([basename(store.tmpDir), `${basename(store.tmpDir)}.lock`, 'not-ours.txt'].sort());
    expect(await readdir(store.tmpDir)).toEqual(['downloading.part']);
  });
});

describe('S3 recording store: check', () => {
  it('passes by writing and deleting a probe object under the prefix, and leaves nothing behind', async () => {
    await store.check();
    const probes = proxy.requests.filter((request) => request.url.includes('.readyz-'));
    expect(probes.map((request) => request.method)).toEqual(['PUT', 'DELETE']);
    expect(probes[0]!.url).toMatch(/^\/recordings\/calls\/\.readyz-/);
    expect((await objectKeys('calls/')).filter((key) => key.includes('.readyz-'))).toEqual([]);
    expect(await readdir(store.tmpDir)).toEqual([]);
  });

  it('probes once for checks that come together, and reuses a recent success', async () => {
    const cached = await storeFor(proxy.endpoint, { checkCacheMs: 60_000 });
    await Promise.all([cached.check(), cached.check(), cached.check()]);
    await cached.check();
    expect(proxy.requests.filter((request) => request.method === 'PUT' && request.url.includes('.readyz-'))).toHaveLength(1);
    await cached.close();
  });

  it('fails clearly when the bucket does not exist', async () => {
    const missing = await createS3RecordingStore({ client: clientFor(proxy.endpoint), bucket: 'no-such-bucket', prefix: 'calls/', tmpDir, checkCacheMs: 0 });
    const error = await failure(missing.check());
    expect(error).toMatchObject({ code: 'STORAGE_S3', retryable: true });
    expect(error.message).toMatch(/^Recording storage \(S3\) has no such bucket \(NoSuchBucket\): could not write the probe object s3:\/\/no-such-bucket\/calls\/\.readyz-/);
    await missing.close();
  });

  it('fails clearly when the endpoint is down', async () => {
    const down = await storeFor(`http://127.0.0.1:${await freePort()}`);
    const error = await failure(down.check());
    expect(error).toMatchObject({ code: 'STORAGE_S3', retryable: true });
    expect(error.message).toMatch(/^Recording storage \(S3\) could not be reached \(connect ECONNREFUSED 127\.0\.0\.1:\d+\): could not write the probe object s3:\/\/recordings\/calls\//);
    await down.close();
  });

  it('fails clearly when the credentials are refused, without quoting them', async () => {
    const wrong = await storeFor(proxy.endpoint, { credentials: { accessKeyId: 'AKIAWRONGKEY0000', secretAccessKey: 'wrong-secret-value' } });
    const error = await failure(wrong.check());
    expect(error).toMatchObject({ code: 'STORAGE_S3', retryable: true });
    expect(error.message).toMatch(/^Recording storage \(S3\) refused the credentials \(InvalidAccessKeyId\): could not write the probe object/);
    // Nor does the cause, which the log serialises: it keeps the SDK error's name and message only.
    const logged = JSON.stringify({ message: error.message, cause: error.cause, ...(error.cause as object) });
    expect(logged).not.toMatch(/AKIAWRONGKEY0000|wrong-secret-value/);
    await wrong.close();
  });

  it('fails when its local temp directory cannot be written: downloads land there first', async () => {
    await rm(tmpDir, { recursive: true });
    await writeFile(tmpDir, 'not a directory');
    await expect(store.check()).rejects.toMatchObject({ code: 'STORAGE', retryable: true });
    expect(proxy.requests).toEqual([]);
    await rm(tmpDir);
  });
});
