import path from 'node:path';
import { S3Client, type S3ClientConfig } from '@aws-sdk/client-s3';
import type { RecordingsStorageConfig } from '../config/config.ts';
import { createLocalRecordingStore } from './local-recording-store.ts';
import type { RecordingStore } from './recording-store.ts';
import { createS3RecordingStore } from './s3-recording-store.ts';

type S3StorageConfig = Extract<RecordingsStorageConfig, { kind: 's3' }>;

/** Connecting to S3 must not take longer than this. */
const S3_CONNECTION_TIMEOUT_MS = 5_000;
/**
 * A request whose response headers have not come by then fails (and is retried by the SDK).
 * It covers sending a part (8 MiB by default), so it is generous; it ends once the headers are
 * in, so a recording streamed out to a slow or paused audio player is never cut by it.
 */
const S3_REQUEST_TIMEOUT_MS = 120_000;

/** The store `RECORDINGS_STORAGE` names: a local directory (the default) or an S3 bucket. */
export function createRecordingStore(config: RecordingsStorageConfig, dataDir: string): Promise<RecordingStore> {
  if (config.kind === 'local') return createLocalRecordingStore(config.dir);
  return createS3RecordingStore({
    client: createS3Client(config),
    readClient: createS3Client(config),
    bucket: config.bucket,
    prefix: config.prefix,
    // Downloads are written, hashed and sniffed on local disk before they go up.
    tmpDir: path.join(dataDir, 'tmp'),
  });
}

/**
 * The S3 client for `config`. Credentials come from the AWS SDK's default chain (the
 * AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN variables, AWS_PROFILE and
 * ~/.aws, web identity, ECS or EC2 roles), which reads `process.env`; `overrides` is for
 * callers that hold their own (tests pass a fixed pair).
 */
export function createS3Client(config: S3StorageConfig, overrides: Partial<S3ClientConfig> = {}): S3Client {
  return new S3Client({
    region: config.region,
    ...(config.endpoint === undefined ? {} : { endpoint: config.endpoint }),
    forcePathStyle: config.forcePathStyle,
    // The SDK's default CRC32 checksums (aws-chunked trailers) are refused or mangled by many
    // S3-compatible servers; every body is still covered by its signed SHA-256.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    requestHandler: {
      connectionTimeout: S3_CONNECTION_TIMEOUT_MS,
      requestTimeout: S3_REQUEST_TIMEOUT_MS,
      throwOnRequestTimeout: true,
    },
    ...overrides,
  });
}
