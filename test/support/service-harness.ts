import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterEach } from 'vitest';
import { loadConfig } from '../../src/config/config.ts';
import { createLogger } from '../../src/log/logger.ts';
import { startService, type Service, type ServiceOptions } from '../../src/service.ts';
import { databaseEnvironment, ensureDatabase } from './test-database.ts';

export const WEBHOOK_TOKEN = 'test-webhook-token-123';
export const API_TOKEN = 'test-api-token-123456';
const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export interface LogLine {
  level: number;
  msg: string;
  [field: string]: unknown;
}

/** Runs the CLI as a user does, from DATA_DIR with only `env` (and PATH); never throws. */
export async function runCli(env: Record<string, string>, ...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [path.join(REPO_ROOT, 'bin/wavoip-recordings.js'), ...args], {
      cwd: env.DATA_DIR,
      env: { PATH: process.env.PATH ?? '', ...env },
    });
    return { code: 0, stdout, stderr };
  } catch (caught) {
    const failure = caught as { code: number; stdout: string; stderr: string };
    return { code: failure.code, stdout: failure.stdout, stderr: failure.stderr };
  }
}

/** Where a local-storage service keeps its partial downloads, one area per process. */
export const tempRoot = (dataDir: string) => path.join(dataDir, 'recordings', '.tmp');

/** Every partial download under the temp directory, whichever process's area it is in. */
export function partialDownloads(dataDir: string): string[] {
  if (!existsSync(tempRoot(dataDir))) return [];
  return (readdirSync(tempRoot(dataDir), { recursive: true }) as string[])
    .filter((name) => name.endsWith('.part'))
    .map((name) => path.join(tempRoot(dataDir), name));
}

/** Starts child services for the tests of a file, and SIGKILLs whatever each test left running. */
export function childServicesKilledAfterEach(): (env: Record<string, string>) => Promise<ChildService> {
  const children: ChildService[] = [];
  afterEach(async () => {
    await Promise.all(children.splice(0).map((child) => child.kill('SIGKILL')));
  });
  return async (env) => {
    const child = await startChildService(env);
    children.push(child);
    return child;
  };
}

export async function makeDataDir(): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), 'wavoip-recordings-test-'));
}

/** Polls scheduled an hour out, so that none runs during a test. */
export const NO_POLLING = { POLL_INITIAL_DELAY: '1h', POLL_MAX_DELAY: '1h', POLL_MAX_WAIT: '4h' } as const;

/** Settings for a service next to a fake storage at `storageOrigin`, polling on a short schedule. */
export function testEnvironment(storageOrigin: string, dataDir: string, overrides: Record<string, string> = {}): Record<string, string> {
  const storage = new URL(storageOrigin);
  return {
    PORT: '0',
    HOST: '127.0.0.1',
    DATA_DIR: dataDir,
    WEBHOOK_TOKEN,
    API_TOKEN,
    RECORDING_URL_ALLOWLIST: storage.host,
    WAVOIP_RECORDING_URL_TEMPLATE: `${storageOrigin}/{whatsapp_call_id}`,
    POLL_INITIAL_DELAY: '100ms',
    POLL_MAX_DELAY: '400ms',
    POLL_MAX_WAIT: '30s',
    JOB_LEASE: '2s',
    // Every test client comes from 127.0.0.1, and many tests present wrong tokens on purpose;
    // the lock-out has tests of its own with a small limit.
    AUTH_FAILURE_LIMIT: '999999',
    LOG_FORMAT: 'json',
    LOG_LEVEL: 'debug',
    ...databaseEnvironment(),
    ...overrides,
  };
}

/** Helpers shared by the in-process service and the child-process one. */
export class ServiceClient {
  /** The token `api()` sends; a service that generated its own has it in DATA_DIR/api-token. */
  apiToken = API_TOKEN;

  constructor(
    public url: string,
    private readonly readLogs: () => LogLine[],
  ) {}

  logs(): LogLine[] {
    return this.readLogs();
  }

  postWebhook(body: unknown, options: { token?: string | null; contentType?: string } = {}): Promise<Response> {
    const token = options.token === undefined ? WEBHOOK_TOKEN : options.token;
    const query = token === null ? '' : `?token=${encodeURIComponent(token)}`;
    return fetch(`${this.url}/webhooks/wavoip${query}`, {
      method: 'POST',
      headers: { 'content-type': options.contentType ?? 'application/json' },
      body: typeof body === 'string' ? body : JSON.stringify(body),
    });
  }

  api(pathAndQuery: string, init: RequestInit & { token?: string } = {}): Promise<Response> {
    const { token = this.apiToken, ...rest } = init;
    return fetch(`${this.url}${pathAndQuery}`, { ...rest, headers: { authorization: `Bearer ${token}`, ...rest.headers } });
  }

  async call(callId: string): Promise<CallView> {
    const response = await this.api(`/api/calls/${encodeURIComponent(callId)}`);
    if (response.status !== 200) throw new Error(`GET call ${callId}: ${response.status} ${await response.text()}`);
    return (await response.json()) as CallView;
  }

  /** The log lines about one call. */
  logsFor(callId: string): LogLine[] {
    return this.logs().filter((line) => line.call_id === callId);
  }

  /**
   * Posts READY and waits until it is applied (the call reads READY): the webhook is answered
   * before its event is applied, and on PostgreSQL the next API request may come first.
   */
  async postReady(callId: string, recordUrl: string): Promise<void> {
    const response = await this.postWebhook({ type: 'RECORD', action: 'UPDATE', whatsapp_call_id: callId, id_session: 789, record_status: 'READY', record_url: recordUrl });
    if (response.status !== 200) throw new Error(`READY for ${callId}: ${response.status} ${await response.text()}`);
    await waitFor(async () => {
      const answer = await this.api(`/api/calls/${encodeURIComponent(callId)}`);
      return answer.status === 200 && ((await answer.json()) as CallView).record_status === 'READY';
    }, `READY applied to call ${callId}`);
  }

  /** Waits until the call's attachment leaves `pending` (or reaches `state`), and returns the call. */
  async waitForAttachment(callId: string, state?: string): Promise<CallView> {
    let last: CallView | undefined;
    await waitFor(async () => {
      const response = await this.api(`/api/calls/${encodeURIComponent(callId)}`);
      if (response.status !== 200) return false;
      last = (await response.json()) as CallView;
      return state === undefined ? last.attachment.state !== 'pending' : last.attachment.state === state;
    }, `call ${callId} attachment ${state ?? 'settled'} (last: ${JSON.stringify(last?.attachment)})`);
    return last as CallView;
  }
}

/** A delivery as GET /api/calls/:id lists it. */
export interface DeliveryView {
  id: string;
  destination: string;
  kind: string;
  state: string;
  attempts: number;
  last_error: string | null;
  next_attempt_at: string | null;
  delivered_at: string | null;
  reason: string | null;
  external_ids: Record<string, unknown> | null;
}

export interface CallView {
  whatsapp_call_id: string;
  status: string | null;
  record_status: string | null;
  record_url_hint: string | null;
  /** `incoming` or `outgoing`; WaVoIP's own value is `direction_raw`. */
  direction: string | null;
  direction_raw: string | null;
  outcome: string;
  peer_phone: string | null;
  peer_phone_raw: string | null;
  peer_name: string | null;
  device_phone: string | null;
  tenant: string | null;
  device_phone_raw: string | null;
  call_type: string | null;
  started_at: string;
  answered_at: string | null;
  ended_at: string | null;
  caller: string | null;
  receiver: string | null;
  duration: number | null;
  attachment: {
    state: string;
    reason: string | null;
    size: number | null;
    sha256: string | null;
    content_type: string | null;
    duration_seconds: number | null;
    attached_at: string | null;
    /** While a fetch job waits. */
    attempts?: number;
    next_attempt_at?: string;
    give_up_at?: string;
    last_error?: string | null;
  };
  events: { event_id: string; type: string; payload: Record<string, unknown> }[];
}

export interface InProcessService extends ServiceClient {
  service: Service;
  dataDir: string;
  stop(): Promise<void>;
}

/** The real service, in this process, with its JSON log captured. */
export async function startInProcessService(
  env: Record<string, string>,
  options: ServiceOptions = {},
): Promise<InProcessService> {
  const lines: LogLine[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line.trim()) lines.push(JSON.parse(line) as LogLine);
      done();
    },
  });
  await ensureDatabase(env);
  const config = loadConfig(env);
  const service = await startService(config, createLogger(config, sink), options);
  const client = new ServiceClient(service.url, () => [...lines]) as InProcessService;
  client.service = service;
  client.dataDir = config.dataDir;
  client.stop = () => service.stop();
  return client;
}

export interface ChildService extends ServiceClient {
  child: ChildProcess;
  /** Resolves with the exit code once the process has ended. */
  exited: Promise<number | null>;
  kill(signal: NodeJS.Signals): Promise<number | null>;
}

/**
 * The service as users run it (`bin/wavoip-recordings.js serve`), in its own process. With
 * `keepLogs: false` its log is read only up to the start-up line (benchmarks: parsing every
 * line would take CPU from the service being measured).
 */
export async function startChildService(env: Record<string, string>, { keepLogs = true } = {}): Promise<ChildService> {
  await ensureDatabase(env);
  const lines: LogLine[] = [];
  const child = spawn(process.execPath, [path.join(REPO_ROOT, 'bin/wavoip-recordings.js'), 'serve'], {
    // The data directory, so that a developer's own .env in the repository cannot leak in.
    cwd: env.DATA_DIR ?? REPO_ROOT,
    env: { PATH: process.env.PATH ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  let buffered = '';
  let listening = false;
  child.stdout?.on('data', (chunk: Buffer) => {
    if (listening && !keepLogs) return;
    buffered += chunk.toString('utf8');
    const complete = buffered.split('\n');
    buffered = complete.pop() ?? '';
    for (const line of complete) if (line.trim().startsWith('{')) lines.push(JSON.parse(line) as LogLine);
  });
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let url: string | undefined;
  await waitFor(
    async () => {
      if (child.exitCode !== null) throw new Error(`service exited with ${child.exitCode}: ${stderr}`);
      url = lines.find((line) => typeof line.url === 'string' && line.msg.includes('listening on'))?.url as string | undefined;
      listening = url !== undefined;
      return listening;
    },
    'child service to listen',
  );
  const client = new ServiceClient(url as string, () => [...lines]) as ChildService;
  client.child = child;
  client.exited = exited;
  client.kill = async (signal) => {
    if (child.exitCode === null) child.kill(signal);
    return exited;
  };
  return client;
}

/** Polls `condition` until it holds; fails with `what` after a generous deadline (never a speed check). */
export async function waitFor(condition: () => boolean | Promise<boolean>, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await condition()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}
