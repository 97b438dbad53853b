import { randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import type { FastifyInstance } from 'fastify';
import { systemClock, type Clock } from './clock.ts';
import { localServiceUrl, type Config } from './config/config.ts';
import { resolveToken, type ResolvedToken } from './config/token-files.ts';
import { fillMissingCallDetails } from './db/calls-repository.ts';
import { assertMigrated, createDb, createWalSync, migrateToLatest, migrationsUnknownHere, type Db } from './db/database.ts';
import { createDatabaseSignal } from './db/database-signal.ts';
import { createFetchJobSignal } from './db/fetch-job-signal.ts';
import { createDestinations } from './delivery/destinations.ts';
import { createDeliveryOutbox } from './delivery/outbox.ts';
import { createRecordingLinks } from './delivery/recording-link.ts';
import { createHttpClient, type HttpClientTimeouts } from './download/http-client.ts';
import { buildApp } from './http/app.ts';
import { closeGracefully, trackRequestsInFlight } from './http/graceful-close.ts';
import { createSecretGuard } from './http/secret-guard.ts';
import { coerceError } from './errors.ts';
import { createDashboardSessions } from './dashboard/dashboard-sessions.ts';
import { createCallChanges } from './live/call-changes.ts';
import { createFetchRecordingJob } from './jobs/fetch-recording-job.ts';
import { createFetchScheduler } from './jobs/fetch-scheduler.ts';
import { createDeliverJob, DEFAULT_DELIVERY_RETRY } from './jobs/deliver-job.ts';
import { createDeliveryScheduler } from './jobs/delivery-scheduler.ts';
import { createRetention } from './jobs/retention.ts';
import { createPeriodicTask } from './jobs/periodic.ts';
import { createWebhookSilenceMonitor } from './jobs/webhook-silence.ts';
import type { Logger } from './log/logger.ts';
import { createMetrics } from './metrics/metrics.ts';
import { createRecordingStore } from './storage/create-recording-store.ts';
import type { RecordingStore } from './storage/recording-store.ts';
import { OWNER_STALE_MS } from './storage/temp-directory.ts';
import { createEventWriter } from './webhook/event-writer.ts';
import { createEventProcessor } from './webhook/process-events.ts';
import { WEBHOOK_PATH } from './webhook/webhook-routes.ts';
import { createWebhookTokens } from './webhook/webhook-tokens.ts';

export interface Service {
  app: FastifyInstance;
  /** The address the server listens on, e.g. http://127.0.0.1:3000. */
  url: string;
  stop(): Promise<void>;
}

export interface ServiceOptions {
  clock?: Clock;
  random?: () => number;
  httpTimeouts?: Partial<HttpClientTimeouts>;
  /** A request whose headers and body have not all arrived by then gets 408 (slowloris). */
  httpRequestTimeoutMs?: number;
  /** How soon a failed delivery is tried again, growing to the cap (tests shorten them). */
  deliveryRetry?: { initialDelayMs: number; maxDelayMs: number; probeIntervalMs?: number };
}

/** The one place that wires the service together: database, storage, jobs, HTTP. */
export async function startService(config: Config, logger: Logger, options: ServiceOptions = {}): Promise<Service> {
  const clock = options.clock ?? systemClock;
  await fs.mkdir(config.dataDir, { recursive: true });

  const db = createDb(config.database);
  try {
    if (config.migrateOnStart) {
      const applied = await migrateToLatest(db);
      if (applied.length > 0) logger.info({ migrations: applied }, 'Database migrated');
      const newer = await migrationsUnknownHere(db);
      if (newer.length > 0) logger.warn({ migrations: newer }, `A newer release has migrated the database (${newer.join(', ')}); running on it as it is`);
    } else {
      await assertMigrated(db);
    }
    await fillCallDetails(db, logger);
  } catch (caught) {
    await db.destroy();
    throw caught;
  }

  let store: RecordingStore;
  try {
    store = await createRecordingStore(config.recordingsStorage, config.dataDir);
  } catch (caught) {
    await db.destroy();
    throw caught;
  }
  let apiToken: ResolvedToken;
  let webhookToken: ResolvedToken | null;
  let outboundSecret: ResolvedToken | null;
  try {
    await cleanTemp(store, logger);
    apiToken = await resolveToken(config.dataDir, 'api', config.apiToken);
    webhookToken = config.webhookToken === null ? null : await resolveToken(config.dataDir, 'webhook', config.webhookToken);
    outboundSecret = config.outboundWebhookUrls.length === 0 ? null : await resolveToken(config.dataDir, 'outbound-webhook', config.outboundWebhookSecret);
  } catch (caught) {
    await Promise.allSettled([store.close()]);
    await db.destroy();
    throw caught;
  }

  const startedAt = clock.now();
  const client = createHttpClient(options.httpTimeouts);
  let url = '';
  const links =
    outboundSecret === null ? null : createRecordingLinks({ secret: outboundSecret.token, baseUrl: () => config.publicUrl ?? url, ttlMs: config.recordingLinkTtlMs });
  const destinations = createDestinations(config, { client, clock, outboundSecret: outboundSecret?.token ?? null, links, db, store });
  const outbox = createDeliveryOutbox(destinations, config.deliveryMaxWaitMs);
  const callChanges = createCallChanges({ db, database: config.database, logger });
  const callChanged = (callId: string | null) => (callId === null ? callChanges.announceResync() : callChanges.announce([callId]));
  const metrics = createMetrics({ db, clock, startedAt, silenceThresholdMs: config.webhookSilenceWarningMs, destinations: destinations.map((destination) => destination.name) });
  const deliverySignal = createDatabaseSignal({
    db,
    database: config.database,
    logger,
    channel: 'wavoip_recordings_deliveries',
    onAnnounced: () => deliveryScheduler.wake(),
    messages: {
      regained: '[Deliveries] Listening for new deliveries again',
      lost: '[Deliveries] Lost the database notification channel; listening again in {delay} (deliveries are still found by the regular scan)',
    },
  });
  const deliveriesDue = () => {
    deliveryScheduler.wake();
    deliverySignal.announce();
  };
  const deliveryScheduler = createDeliveryScheduler({
    db,
    clock,
    logger,
    workerId: randomUUID(),
    concurrency: config.deliveryConcurrency,
    leaseMs: config.jobLeaseMs,
    destinations: destinations.map((destination) => destination.name),
    probeIntervalMs: options.deliveryRetry?.probeIntervalMs,
    runDelivery: createDeliverJob({
      db,
      clock,
      random: options.random ?? Math.random,
      logger,
      metrics,
      destinations: new Map(destinations.map((destination) => [destination.name, destination])),
      timings: { ...(options.deliveryRetry ?? DEFAULT_DELIVERY_RETRY), maxWaitMs: config.deliveryMaxWaitMs },
      announce: () => deliverySignal.announce(),
      onCallChanged: callChanged,
    }),
  });
  const fetchJobSignal = createFetchJobSignal({ db, database: config.database, logger, onAnnounced: () => scheduler.wake() });
  const fetchJobsDue = () => {
    scheduler.wake();
    fetchJobSignal.announce();
  };
  const scheduler = createFetchScheduler({
    db,
    clock,
    logger,
    workerId: randomUUID(),
    concurrency: config.downloadConcurrency,
    leaseMs: config.jobLeaseMs,
    runJob: createFetchRecordingJob({
      db,
      store,
      client,
      clock,
      random: options.random ?? Math.random,
      logger,
      metrics,
      timings: config,
      allowlist: config.recordingUrlAllowlist,
      maxBytes: config.recordingMaxBytes,
      urlTemplate: config.recordingUrlTemplate,
      announceRelease: () => fetchJobSignal.announce(),
      outbox,
      onDeliveriesAdded: deliveriesDue,
      onCallChanged: callChanged,
    }),
  });
  const events = createEventProcessor({
    db,
    clock,
    logger,
    timings: config,
    onFetchScheduled: fetchJobsDue,
    sweep: config.database.dialect === 'postgres',
    outbox,
    onDeliveriesAdded: deliveriesDue,
    onCallsChanged: (callIds) => callChanges.announce(callIds),
  });
  const walSync = createWalSync(config.database);
  const eventWriter = createEventWriter(db, walSync);
  const webhookTokens = createWebhookTokens({ db, database: config.database, clock, logger });
  const app = buildApp(
    { config, logger, clock, startedAt, db, store, apiToken: apiToken.token, webhookToken: webhookToken?.token ?? null, webhookTokens, eventWriter, events, fetchJobsDue, metrics,
      deliveries: { outbox, links, due: deliveriesDue },
      sessions: config.dashboard.enabled ? createDashboardSessions({ db, clock, ttlMs: config.dashboard.sessionTtlMs }) : null,
      callChanges,
      secretGuards: {
        webhook: createSecretGuard({ maxFailures: config.authFailureLimit, lockOutRightSecrets: false, what: 'webhook', logger }),
        api: createSecretGuard({ maxFailures: config.authFailureLimit, lockOutRightSecrets: true, what: 'API', logger }),
      },
    },
    { requestTimeoutMs: options.httpRequestTimeoutMs },
  );
  const requests = trackRequestsInFlight(app.server);

  try {
    // Before the first webhook: a device group's token must be known when it arrives.
    await webhookTokens.start();
    await app.listen({ port: config.port, host: config.host });
  } catch (caught) {
    await Promise.allSettled([
      app.close(), client.close(), walSync.close(), fetchJobSignal.close(), deliverySignal.close(), callChanges.close(), webhookTokens.stop(), store.close(),
      ...destinations.map((destination) => destination.close?.()),
    ]);
    await db.destroy();
    throw caught;
  }
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  url = localServiceUrl(config.host, port);

  const retention = createRetention({
    db,
    store,
    clock,
    logger,
    eventRetentionMs: config.eventRetentionMs,
    recordingRetentionMs: config.recordingRetentionMs,
    onCallsChanged: (callIds) => callChanges.announce(callIds),
  });
  const silenceMonitor = createWebhookSilenceMonitor({
    db,
    clock,
    logger,
    thresholdMs: config.webhookSilenceWarningMs,
    startedAt,
    webhookPath: WEBHOOK_PATH,
  });
  // A process killed while this one runs (or just before it started) leaves an area that looks
  // owned until its lock goes stale: swept later, not only at the next start.
  // A replica of an older release writing during a rolling update leaves calls without the
  // details it does not know (direction, parties, outcome): derived here until it is gone.
  const callDetailsFill = createPeriodicTask(() => fillCallDetails(db, logger), CALL_DETAILS_FILL_INTERVAL_MS, (error) =>
    logger.error({ err: error }, `Could not derive call details: ${error.message}`),
  );
  const tempSweep = createPeriodicTask(() => cleanTemp(store, logger), OWNER_STALE_MS, (error) =>
    logger.error({ err: error }, `Could not clean the temporary recordings directory: ${error.message}`),
  );
  scheduler.start();
  deliveryScheduler.start();
  events.start();
  retention.start();
  silenceMonitor.start();
  tempSweep.start();
  callDetailsFill.start();
  logStartup(config, logger, url, { api: apiToken, webhook: webhookToken });
  logDestinations(config, logger, destinations.map((destination) => destination.name), outboundSecret);

  let stopping: Promise<void> | undefined;
  return {
    app,
    url,
    stop() {
      stopping ??= (async () => {
        // Live streams never finish by themselves: ended first, so that the requests still in
        // flight are the ones that will.
        const liveClosed = callChanges.close();
        // Jobs do not wait for the HTTP side: claiming stops at once, and downloads and deliveries
        // in flight get the same grace as requests (then are aborted; they run again later).
        const jobsStopped = Promise.all([
          scheduler.stop({ graceMs: config.shutdownGraceMs }),
          deliveryScheduler.stop({ graceMs: config.shutdownGraceMs }),
          retention.stop(),
          silenceMonitor.stop(),
          tempSweep.stop(),
          callDetailsFill.stop(),
        ]);
        const steps = await Promise.allSettled([closeGracefully(app, requests, { graceMs: config.shutdownGraceMs, logger }), jobsStopped]);
        // Events acknowledged but not yet applied are applied at the next start.
        steps.push(
          ...(await Promise.allSettled([
            events.stop(),
            fetchJobSignal.close(),
            deliverySignal.close(),
            liveClosed,
            webhookTokens.stop(),
            client.close(),
            store.close(),
            ...destinations.map((destination) => destination.close?.()),
          ])),
        );
        for (const step of steps) {
          if (step.status === 'rejected') logger.error({ err: coerceError(step.reason) }, `Shutting down: ${coerceError(step.reason).message}; going on`);
        }
        // Whatever failed above, the database is closed cleanly; only a failure here fails the stop.
        try {
          await walSync.close();
        } finally {
          await db.destroy();
        }
        logger.info('Shutting down: database closed');
      })();
      return stopping;
    },
  };
}

const CALL_DETAILS_FILL_INTERVAL_MS = 60_000;

async function fillCallDetails(db: Db, logger: Logger): Promise<void> {
  const filled = await fillMissingCallDetails(db);
  if (filled > 0) logger.info({ calls: filled }, `Derived direction, parties and outcome for ${filled} calls stored without them (by an older release)`);
}

async function cleanTemp(store: RecordingStore, logger: Logger): Promise<void> {
  const removed = await store.cleanTemp();
  if (removed > 0) logger.warn({ removed }, 'Removed partial downloads left by a process that stopped; their jobs run again');
}

function logDestinations(config: Config, logger: Logger, names: string[], secret: ResolvedToken | null): void {
  if (names.length === 0) return;
  logger.info({ destinations: names }, `[Deliveries] Delivering calls to ${names.join(', ')}`);
  if (secret?.generated) logger.info(`Outbound webhook secret generated and saved to ${secret.file}: give it to the receivers to verify signatures`);
  else if (secret?.file) logger.info(`Outbound webhook secret: the one generated earlier, in ${secret.file}`);
  if (secret !== null && config.publicUrl === undefined) {
    logger.warn('PUBLIC_URL is not set: recording links in outbound webhooks point at this machine\'s own address, which receivers elsewhere cannot reach');
  }
  if (config.database.dialect === 'postgres' && secret?.file) {
    logger.warn('OUTBOUND_WEBHOOK_SECRET is not set: each replica generates its own, and receivers cannot verify them all. Set the same value on every replica.');
  }
}

function logStartup(config: Config, logger: Logger, url: string, tokens: { api: ResolvedToken; webhook: ResolvedToken | null }): void {
  const database = config.database.dialect === 'sqlite' ? config.database.filename : config.database.redactedUrl;
  logger.info({ url, data_dir: config.dataDir, database }, `wavoip-recordings listening on ${url}`);
  if (config.dashboard.enabled) {
    logger.info(`Dashboard: ${url}/ (sign in with the API token${config.dashboard.password === undefined ? '' : ' or DASHBOARD_PASSWORD'})`);
  }
  // Tokens themselves stay out of the log, which is often shipped elsewhere: only where they are.
  if (tokens.api.generated) {
    logger.info(`API token generated and saved to ${tokens.api.file}`);
    logger.info(`Try it: curl -H "Authorization: Bearer $(cat ${tokens.api.file})" ${url}/api/calls`);
  } else if (tokens.api.file) {
    logger.info(`API token: the one generated earlier, in ${tokens.api.file} (set API_TOKEN to choose your own)`);
  }
  if (tokens.webhook === null) {
    logger.warn(
      `WEBHOOK_TOKEN is none: anyone who can reach ${WEBHOOK_PATH} can post events. ` +
        'Unset it (a token is then generated) or set one, unless another layer authenticates WaVoIP.',
    );
  } else {
    if (tokens.webhook.generated) logger.info(`Webhook token generated and saved to ${tokens.webhook.file}`);
    const where = config.publicUrl ?? 'https://your-host';
    logger.info(`WaVoIP panel webhook URL: ${where}${WEBHOOK_PATH}?token=<the webhook token>; \`npx wavoip-recordings webhook-url\` prints it whole`);
  }
  if (config.database.dialect === 'postgres') {
    const generated = [tokens.api.file && 'API_TOKEN', tokens.webhook?.file && 'WEBHOOK_TOKEN'].filter(Boolean);
    if (generated.length > 0) {
      logger.warn(
        `${generated.join(' and ')} ${generated.length > 1 ? 'are' : 'is'} not set: each replica generates its own. ` +
          'Set the same value on every replica behind a load balancer.',
      );
    }
    if (config.recordingsStorage.kind === 'local') {
      logger.warn(
        `Recordings are kept on this replica's disk (${config.recordingsStorage.dir}): with several replicas, the others cannot serve them. ` +
          'Use RECORDINGS_STORAGE=s3://bucket/prefix for a fleet.',
      );
    }
  }
}
