import { apiTokenFile, readApiToken } from '../api/api-token.ts';
import { loadConfig, localServiceUrl, type Config } from '../config/config.ts';
import { createDb, migrateToLatest } from '../db/database.ts';
import { AppError, coerceError } from '../errors.ts';
import { createLogger, redactUrl } from '../log/logger.ts';
import { startService, type Service } from '../service.ts';
import { WEBHOOK_PATH } from '../webhook/webhook-routes.ts';

/**
 * Added to SHUTDOWN_GRACE (after which connections still open are closed) for aborting
 * downloads and closing the database. Reached only if something hangs past that; then the
 * process exits 1 without a clean close.
 */
const SHUTDOWN_MARGIN_MS = 5_000;

/** Applies pending migrations and exits: for deployments that set MIGRATE_ON_START=false. */
export async function migrateCommand(): Promise<void> {
  const config = loadConfig();
  const db = createDb(config.database);
  try {
    const applied = await migrateToLatest(db);
    const where = config.database.dialect === 'sqlite' ? config.database.filename : config.database.redactedUrl;
    process.stdout.write(applied.length === 0 ? `${where}: already up to date\n` : `${where}: applied ${applied.join(', ')}\n`);
  } finally {
    await db.destroy();
  }
}

export async function serveCommand(): Promise<void> {
  const config = loadConfig();
  const shutdownDeadlineMs = config.shutdownGraceMs + SHUTDOWN_MARGIN_MS;
  const logger = createLogger(config);
  let service: Service | undefined;
  let stopSignal: NodeJS.Signals | undefined;

  let shuttingDown = false;
  const shutDown = (signal: NodeJS.Signals) => {
    if (shuttingDown) {
      logger.warn(`Received ${signal} again: already shutting down (exits within ${shutdownDeadlineMs / 1000}s of the first signal)`);
      return;
    }
    shuttingDown = true;
    logger.info(`Received ${signal}: finishing requests in flight and stopping`);
    const forced = setTimeout(() => {
      logger.error(`Shutdown did not finish within ${shutdownDeadlineMs / 1000}s; exiting without closing the database cleanly`);
      process.exit(1);
    }, shutdownDeadlineMs).unref();
    (service as Service)
      .stop()
      .then(() => {
        clearTimeout(forced);
        logger.info('Stopped');
        process.exit(0);
      })
      .catch((caught: unknown) => {
        logger.error({ err: coerceError(caught) }, 'Shutdown failed');
        process.exit(1);
      });
  };
  // Installed before start-up, so that a signal during it still ends in a clean stop. Kept
  // installed: a second signal must not kill the process halfway through closing the database.
  const onSignal = (signal: NodeJS.Signals) => (service ? shutDown(signal) : (stopSignal ??= signal));
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  try {
    service = await startService(config, logger);
  } catch (caught) {
    if ((caught as NodeJS.ErrnoException).code === 'EADDRINUSE') {
      throw new AppError(`port ${config.port} on ${config.host} is already in use: stop the other process or set PORT`, {
        code: 'PORT_IN_USE',
        cause: caught,
      });
    }
    throw caught;
  }
  if (stopSignal) shutDown(stopSignal);
}

export async function sendTestEventCommand(options: { url?: string; callId: string; status: string }): Promise<void> {
  const config = loadConfig();
  const url = options.url ?? defaultWebhookUrl(config);
  const body = { type: 'RECORD', whatsapp_call_id: options.callId, record_status: options.status };
  const response = await fetchOrExplain(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const text = await response.text();
  process.stdout.write(`POST ${redactUrl(url)} ${JSON.stringify(body)}\n→ ${response.status} ${text}\n`);
  if (!response.ok) throw new AppError(`the service answered ${response.status}`, { code: 'REQUEST_REFUSED' });
}

export async function listCallsCommand(options: { state?: string; limit: number; json?: boolean; url?: string }): Promise<void> {
  const query = new URLSearchParams({ limit: String(options.limit) });
  if (options.state) query.set('state', options.state);
  const page = (await callApi(options.url, `/api/calls?${query}`)) as { calls: ApiCall[]; next_cursor: string | null };
  if (options.json) {
    process.stdout.write(`${JSON.stringify(page, null, 2)}\n`);
    return;
  }
  if (page.calls.length === 0) {
    process.stdout.write(options.state ? `No calls with attachment ${options.state}.\n` : 'No calls yet.\n');
    return;
  }
  const rows = page.calls.map((call) => [
    call.first_seen_at ?? '',
    call.whatsapp_call_id,
    call.attachment.state,
    call.record_status ?? '-',
    call.attachment.reason ?? '',
  ]);
  const header = ['FIRST SEEN', 'CALL ID', 'ATTACHMENT', 'RECORD STATUS', 'REASON'];
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => (row[column] ?? '').length)));
  for (const row of [header, ...rows]) {
    process.stdout.write(`${row.map((cell, column) => cell.padEnd(widths[column] ?? 0)).join('  ').trimEnd()}\n`);
  }
}

export async function retryCommand(callId: string, options: { url?: string }): Promise<void> {
  const call = (await callApi(options.url, `/api/calls/${encodeURIComponent(callId)}/retry`, 'POST')) as ApiCall;
  process.stdout.write(`Call ${call.whatsapp_call_id}: attachment is ${call.attachment.state}; fetching the recording again.\n`);
}

interface ApiCall {
  whatsapp_call_id: string;
  record_status: string | null;
  first_seen_at: string | null;
  attachment: { state: string; reason: string | null };
}

async function callApi(baseUrl: string | undefined, pathAndQuery: string, method = 'GET'): Promise<unknown> {
  const config = loadConfig();
  const token = config.apiToken ?? (await readStoredApiToken(config));
  const response = await fetchOrExplain(`${baseUrl ?? defaultBaseUrl(config)}${pathAndQuery}`, {
    method,
    headers: { authorization: `Bearer ${token}` },
  });
  const body = (await response.json().catch(() => ({}))) as { error?: string };
  if (!response.ok) throw new AppError(body.error ?? `the service answered ${response.status}`, { code: 'REQUEST_REFUSED' });
  return body;
}

async function readStoredApiToken(config: Config): Promise<string> {
  const file = apiTokenFile(config.dataDir);
  const token = await readApiToken(file);
  if (token === undefined) {
    throw new AppError(`no API token: set API_TOKEN, or run this where the service keeps ${file}`, { code: 'NO_API_TOKEN' });
  }
  return token;
}

async function fetchOrExplain(url: string, init: RequestInit): Promise<Response> {
  try {
    return await fetch(url, { ...init, signal: AbortSignal.timeout(15_000) });
  } catch (caught) {
    const reason = coerceError(caught);
    const detail = reason.cause instanceof Error ? reason.cause.message : reason.message;
    throw new AppError(`could not reach ${url.split('?')[0]}: ${detail} (is the service running?)`, { code: 'UNREACHABLE', cause: caught });
  }
}

function defaultBaseUrl(config: Config): string {
  return localServiceUrl(config.host, config.port);
}

function defaultWebhookUrl(config: Config): string {
  const token = config.webhookToken === undefined ? '' : `?token=${encodeURIComponent(config.webhookToken)}`;
  return `${defaultBaseUrl(config)}${WEBHOOK_PATH}${token}`;
}
