import { randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat as statFile } from 'node:fs/promises';
import { Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { AppError, coerceError } from '../errors.ts';
import { assertRecordingKey } from './recording-store.ts';
import type { RecordingStore } from './recording-store.ts';
import { runStorageOperation, storageFault } from './storage-faults.ts';
import { openTempDirectory } from './temp-directory.ts';

export interface S3RecordingStoreOptions {
  /** Built by `createS3Client` (checksum settings, timeouts); the store owns it from now on. */
  client: S3Client;
  /**
   * For the API's reads (default: `client`). Its own connections: audio streamed to slow or
   * paused players holds a socket each, and must not starve uploads and the readiness probe.
   */
  readClient?: S3Client;
  bucket: string;
  /** Prepended to every key: '' or a prefix such as 'calls/' (a missing '/' is added). */
  prefix: string;
  /** Local directory the downloads are written to before they are uploaded (DATA_DIR/tmp), each process in an area of its own. */
  tmpDir: string;
  /**
   * A recording larger than this goes up as a multipart upload, in parts of this size (S3's
   * minimum is 5 MiB); a smaller one as one PutObject. Default 8 MiB.
   */
  partSize?: number;
  /** Parts uploaded at once by one upload; it buffers up to queueSize × partSize. Default 2. */
  queueSize?: number;
  /** A successful `check` is reused this long (ms), so /readyz cannot be made to spend PUTs. Default 5000. */
  checkCacheMs?: number;
}

const DEFAULT_PART_SIZE = 8 * 1024 * 1024;
const DEFAULT_QUEUE_SIZE = 2;
const DEFAULT_CHECK_CACHE_MS = 5_000;
/** The readiness probe must answer while a load balancer still waits for it. */
const CHECK_TIMEOUT_MS = 5_000;
/** An API request waits this long for S3 to start answering a read (per attempt). */
const READ_TIMEOUT_MS = 10_000;
const MAX_PENDING_ABORTS = 100;
/** Aborting an upload that just failed should not hold a shutdown for long. */
const ABORT_TIMEOUT_MS = 10_000;

/**
 * Recordings as objects in an S3 bucket (AWS, MinIO, Ceph…), under `prefix`. Downloads still
 * land in a local temp directory (streamed, hashed and sniffed there); `put` uploads the
 * finished file and only then reports success.
 *
 * No partial object ever appears under a recording's key: S3 makes a PutObject visible only
 * once its whole body has arrived, and a multipart upload only at CompleteMultipartUpload, which
 * is sent after every part went up; a failed multipart upload is aborted (its parts deleted),
 * and an abort that fails is tried again later. Every part is sent as a buffer whose SHA-256 is
 * signed (SigV4 `x-amz-content-sha256`) and checked by S3 on receipt; after the upload,
 * HeadObject must report the file's exact length before `put` resolves.
 *
 * The S3 client must be built with `requestChecksumCalculation: 'WHEN_REQUIRED'` (see
 * `createS3Client`): the SDK's default CRC32 trailers are not understood by every
 * S3-compatible server.
 */
export async function createS3RecordingStore(options: S3RecordingStoreOptions): Promise<RecordingStore> {
  const { client, bucket, tmpDir } = options;
  const readClient = options.readClient ?? client;
  const prefix = options.prefix === '' || options.prefix.endsWith('/') ? options.prefix : `${options.prefix}/`;
  const partSize = options.partSize ?? DEFAULT_PART_SIZE;
  const queueSize = options.queueSize ?? DEFAULT_QUEUE_SIZE;
  const checkCacheMs = options.checkCacheMs ?? DEFAULT_CHECK_CACHE_MS;
  const temp = await openTempDirectory(tmpDir);

  const objectKeyOf = (key: string): string => {
    assertRecordingKey(key);
    return `${prefix}${key}`;
  };
  const uri = (objectKey: string): string => `s3://${bucket}/${objectKey}`;

  // Multipart uploads whose abort failed (S3 unreachable just then): upload id → object key.
  // They hold no object, only parts that cost storage; tried again after the next success.
  const pendingAborts = new Map<string, string>();
  /** 'refused': S3 will not abort it whatever we do (no AbortMultipartUpload on that server). */
  const abortUpload = async (uploadId: string, objectKey: string): Promise<'aborted' | 'later' | { refused: string }> => {
    try {
      await client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: objectKey, UploadId: uploadId }), {
        abortSignal: AbortSignal.timeout(ABORT_TIMEOUT_MS),
      });
    } catch (error) {
      if (isTransient(error)) {
        pendingAborts.set(uploadId, objectKey);
        // Bounded: past this many, S3 has been failing for long, and the lifecycle rule is the remedy.
        if (pendingAborts.size > MAX_PENDING_ABORTS) pendingAborts.delete(pendingAborts.keys().next().value as string);
        return 'later';
      }
      pendingAborts.delete(uploadId);
      // NoSuchUpload: already gone.
      return isNotFound(error) ? 'aborted' : { refused: describe(coerceError(error) as SdkError) };
    }
    pendingAborts.delete(uploadId);
    return 'aborted';
  };
  const retryPendingAborts = async (): Promise<void> => {
    await Promise.all([...pendingAborts].map(([uploadId, objectKey]) => abortUpload(uploadId, objectKey)));
  };

  const interrupted = (objectKey: string, note = '') =>
    new AppError(`Recording storage (S3) upload was interrupted: could not upload ${uri(objectKey)}${note}`, {
      code: 'STORAGE_S3',
      statusCode: 500,
      retryable: true,
    });

  async function upload(tempPath: string, objectKey: string, size: number, signal: AbortSignal | undefined): Promise<void> {
    if (signal?.aborted) throw interrupted(objectKey);
    const body = createReadStream(tempPath);
    let bodyError: Error | undefined;
    body.on('error', (error) => (bodyError = error));
    const abortController = new AbortController();
    const interrupt = () => abortController.abort();
    signal?.addEventListener('abort', interrupt, { once: true });
    const upload = new Upload({
      client,
      params: { Bucket: bucket, Key: objectKey, Body: body, ContentLength: size },
      partSize,
      queueSize,
      abortController,
      // We abort a failed multipart upload ourselves, below: lib-storage's own abort replaces
      // the upload's error with the abort's when the abort fails too, and does not say so.
      leavePartsOnError: true,
    });
    try {
      await upload.done();
    } catch (caught) {
      // After a failure done() settles only once every part request has, so nothing races the
      // abort. When interrupted it settles at once: a part still in flight may land after the
      // abort, and the bucket's lifecycle rule is what removes such a part.
      body.destroy();
      const aborted = upload.uploadId === undefined ? 'aborted' : await abortUpload(upload.uploadId, objectKey);
      const note =
        aborted === 'aborted'
          ? ''
          : aborted === 'later'
            ? '; its incomplete multipart upload (no object, only parts) is aborted later'
            : `; its incomplete multipart upload (no object, only parts) could not be aborted: S3 ${aborted.refused}`;
      if (signal?.aborted) throw interrupted(objectKey, note);
      if (bodyError !== undefined) throw storageFault('read the temporary recording file', bodyError);
      throw s3Fault(`upload ${uri(objectKey)}`, caught, note);
    } finally {
      signal?.removeEventListener('abort', interrupt);
      body.destroy();
    }
  }

  async function verify(objectKey: string, size: number): Promise<void> {
    const head = await send(`check the uploaded ${uri(objectKey)}`, () =>
      client.send(new HeadObjectCommand({ Bucket: bucket, Key: objectKey })),
    );
    if (head.ContentLength !== size) {
      throw new AppError(
        `Recording storage (S3) holds ${head.ContentLength ?? 'an unknown number of'} bytes under ${uri(objectKey)} after an upload of ${size} bytes`,
        { code: 'STORAGE_S3', statusCode: 500, retryable: true },
      );
    }
  }

  // One probe at a time, and a success reused for a while: /readyz needs no token, and each
  // probe is a PUT and a DELETE, which S3 bills.
  let lastSuccessAt = Number.NEGATIVE_INFINITY;
  let probing: Promise<void> | undefined;
  async function probe(): Promise<void> {
    // Downloads land on local disk first: a temp directory that cannot be written, or that is
    // inside the database's headroom, stops them too.
    await temp.checkWritable();
    // A write is the only honest test (HeadBucket passes with read-only credentials); the
    // leading '.' keeps the probe apart from any recording key.
    const probeKey = `${prefix}.readyz-${randomUUID()}`;
    const signal = () => ({ abortSignal: AbortSignal.timeout(CHECK_TIMEOUT_MS) });
    await send(`write the probe object ${uri(probeKey)}`, () =>
      client.send(new PutObjectCommand({ Bucket: bucket, Key: probeKey, Body: 'ok', ContentType: 'text/plain' }), signal()),
    );
    await send(`delete the probe object ${uri(probeKey)}`, () =>
      client.send(new DeleteObjectCommand({ Bucket: bucket, Key: probeKey }), signal()),
    );
    lastSuccessAt = performance.now();
    await retryPendingAborts();
  }

  return {
    tmpDir: temp.path,
    tmpHeadroomBytes: temp.headroomBytes,

    async put(tempPath, key, signal) {
      const objectKey = objectKeyOf(key);
      const { size } = await runStorageOperation('read the temporary recording file', () => statFile(tempPath));
      await upload(tempPath, objectKey, size, signal);
      await verify(objectKey, size);
      // Uploaded and verified: like the local store's rename, nothing is left in tmpDir.
      await temp.discard(tempPath);
      await Promise.all([retryPendingAborts(), temp.retryStranded()]);
    },

    discardTemp: temp.discard,
    prepareTemp: temp.keepOwnership,

    async stat(key) {
      const objectKey = objectKeyOf(key);
      try {
        const head = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: objectKey }), { requestTimeout: READ_TIMEOUT_MS });
        return { size: head.ContentLength ?? 0 };
      } catch (error) {
        if (isNotFound(error)) return null;
        throw s3Fault(`stat ${uri(objectKey)}`, error);
      }
    },

    async openRead(key, range) {
      const objectKey = objectKeyOf(key);
      try {
        const object = await readClient.send(
          new GetObjectCommand({ Bucket: bucket, Key: objectKey, Range: range ? `bytes=${range.start}-${range.end}` : undefined }),
          // Until the headers only: the body then streams for as long as the listener reads.
          { requestTimeout: READ_TIMEOUT_MS },
        );
        if (!(object.Body instanceof Readable)) {
          throw new AppError(`Recording storage (S3) sent no body for ${uri(objectKey)}`, { code: 'STORAGE_S3', statusCode: 500, retryable: true });
        }
        // A server that ignores Range sends the whole object: passed on, the client would get
        // the wrong bytes under a 206 of the range's length.
        if (range !== undefined && !object.ContentRange?.startsWith(`bytes ${range.start}-${range.end}/`)) {
          object.Body.destroy();
          throw new AppError(`Recording storage (S3) did not honour the range ${range.start}-${range.end} of ${uri(objectKey)}`, {
            code: 'STORAGE_S3',
            statusCode: 502,
            retryable: true,
          });
        }
        return object.Body;
      } catch (error) {
        if (isNotFound(error)) return null;
        throw s3Fault(`read ${uri(objectKey)}`, error);
      }
    },

    async remove(key) {
      const objectKey = objectKeyOf(key);
      // S3 answers a DELETE of a missing key with success: removing twice is fine.
      await send(`remove ${uri(objectKey)}`, () => client.send(new DeleteObjectCommand({ Bucket: bucket, Key: objectKey })));
    },

    cleanTemp: temp.cleanLeftovers,

    check() {
      if (performance.now() - lastSuccessAt < checkCacheMs) return Promise.resolve();
      probing ??= probe().finally(() => (probing = undefined));
      return probing;
    },

    async close() {
      client.destroy();
      if (readClient !== client) readClient.destroy();
      await temp.close();
    },
  };
}

async function send<T>(operation: string, run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (error) {
    throw s3Fault(operation, error);
  }
}

/** Node's own codes for a connection that could not be made… */
const UNREACHABLE_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL']);
/** …or that broke on the way. */
const DROPPED_CODES = new Set(['ECONNRESET', 'ECONNABORTED', 'EPIPE', 'EPROTO', 'UND_ERR_SOCKET']);
const CREDENTIAL_ERRORS = new Set(['InvalidAccessKeyId', 'SignatureDoesNotMatch', 'ExpiredToken', 'InvalidToken', 'TokenRefreshRequired']);

interface SdkError extends Error {
  code?: unknown;
  $metadata?: { httpStatusCode?: number };
}

/**
 * An S3 or network failure as a retryable STORAGE_S3 AppError that names the operation and the
 * object, in the style of `storageFault`: "Recording storage (S3) <what>: could not <operation>".
 * The SDK's error is not kept as the cause: its fields (the string to sign, the access key id…)
 * would reach the log through the error serialiser. Only its name and message are.
 */
function s3Fault(operation: string, caught: unknown, note = ''): AppError {
  if (caught instanceof AppError) return caught;
  const error = coerceError(caught) as SdkError;
  const cause = new Error(error.message);
  cause.name = error.name;
  return new AppError(`Recording storage (S3) ${describe(error)}: could not ${operation}${note}`, {
    code: 'STORAGE_S3',
    statusCode: 500,
    retryable: true,
    cause,
  });
}

function describe(error: SdkError): string {
  const status = error.$metadata?.httpStatusCode;
  const code = typeof error.code === 'string' ? error.code : undefined;
  // AggregateError (several addresses tried) has an empty message, and its code.
  const detail = error.message.trim() === '' ? (code ?? error.name) : error.message;
  // A HEAD has no body, so no error name: the status is all S3 said.
  const name = error.name === 'Unknown' || error.name === 'UnknownError' ? `HTTP ${status ?? 'error'}` : error.name;
  if (name === 'NoSuchBucket') return 'has no such bucket (NoSuchBucket)';
  if (CREDENTIAL_ERRORS.has(name)) return `refused the credentials (${name})`;
  if (name === 'CredentialsProviderError') {
    return 'has no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or another source the AWS SDK reads)';
  }
  if (name === 'AccessDenied' || status === 403) return `denied access (${name})`;
  // Before the name: the SDK names a reset connection a TimeoutError.
  if (code !== undefined && UNREACHABLE_CODES.has(code)) return `could not be reached (${detail})`;
  if (code !== undefined && DROPPED_CODES.has(code)) return `dropped the connection (${detail})`;
  if (name === 'AbortError' || name === 'TimeoutError' || code === 'ETIMEDOUT') return `did not answer in time (${detail})`;
  if (status !== undefined) return `answered HTTP ${status} ${name}${detail !== error.name && detail !== 'UnknownError' ? ` (${detail})` : ''}`;
  return `failed (${name}: ${detail})`;
}

function isNotFound(caught: unknown): boolean {
  const error = caught as SdkError | null;
  if (error?.name === 'NoSuchBucket') return false;
  return error?.name === 'NoSuchKey' || error?.name === 'NotFound' || error?.name === 'NoSuchUpload' || error?.$metadata?.httpStatusCode === 404;
}

/** Errors a retry may get past: the network, a timeout, throttling or a 5xx other than 501 (an operation the server lacks for good). */
function isTransient(caught: unknown): boolean {
  const error = caught as SdkError | null;
  const status = error?.$metadata?.httpStatusCode;
  if (status === undefined) return true;
  return status === 408 || status === 429 || (status >= 500 && status !== 501);
}

