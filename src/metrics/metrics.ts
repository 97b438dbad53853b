import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { ATTACHMENT_STATES } from '../calls/call-state.ts';
import type { Clock } from '../clock.ts';
import { countCallsByAttachmentState } from '../db/calls-repository.ts';
import { checkDb, type Db } from '../db/database.ts';
import { countSilentDevices, listSilentDevices } from '../db/devices-repository.ts';
import { findLatestEventReceivedAt } from '../db/events-repository.ts';
import { summariseDueFetchJobs } from '../db/fetch-jobs-repository.ts';
import { summariseDeliveries } from '../db/deliveries-repository.ts';
import { listDestinationStates } from '../db/destination-states-repository.ts';

export type WebhookResult = 'accepted' | 'invalid' | 'unauthorized' | 'locked_out' | 'unavailable';
/** superseded: an event or another attempt changed the call meanwhile, and this attempt gave way. */
export type FetchOutcome = 'attached' | 'retry' | 'failed' | 'interrupted' | 'superseded';
/** blocked: the destination's settings are wrong; gone: its receiver answered 410 and it was disabled. */
export type DeliveryOutcome = 'delivered' | 'retry' | 'given_up' | 'blocked' | 'gone' | 'interrupted';

/** Every instrument the service records, on a registry of its own (not prom-client's global one). */
export interface Metrics {
  registry: Registry;
  webhooks: Counter<'type' | 'result'>;
  intakeDuration: Histogram;
  authFailures: Counter<'endpoint' | 'result'>;
  fetches: Counter<'mode' | 'outcome'>;
  downloadedBytes: Counter;
  downloadDuration: Histogram<'mode'>;
  deliveries: Counter<'destination' | 'kind' | 'outcome'>;
}

interface MetricsSources {
  db: Db;
  clock: Clock;
  /** The moment from which silence is counted while no webhook has ever arrived. */
  startedAt: number;
  /** WEBHOOK_SILENCE_WARNING: a device quiet this long is silent. */
  silenceThresholdMs: number;
  /** The configured destinations' names, reported even while nothing waits for them. */
  destinations?: readonly string[];
}

/**
 * Series of the per-device silence gauge at most: a fleet has thousands of devices, and a series
 * for each would swamp Prometheus. Only silent devices get one, the most recently silent first
 * (a device long dead is likely retired); devices_silent counts them all.
 */
const MAX_SILENT_DEVICE_SERIES = 100;

const PREFIX = 'wavoip_recordings_';

/**
 * Counters and histograms are recorded as things happen; the gauges are read from the
 * database at scrape time, so every replica reports the same fleet-wide figures.
 */
export function createMetrics(sources: MetricsSources): Metrics {
  const { db, clock } = sources;
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: PREFIX });

  const metrics: Metrics = {
    registry,
    webhooks: new Counter({
      name: `${PREFIX}webhooks_total`,
      help: 'Webhook deliveries by event type and result.',
      labelNames: ['type', 'result'],
      registers: [registry],
    }),
    intakeDuration: new Histogram({
      name: `${PREFIX}webhook_intake_duration_seconds`,
      help: 'Time from a webhook request arriving to its durable acknowledgement.',
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [registry],
    }),
    authFailures: new Counter({
      name: `${PREFIX}auth_failures_total`,
      help: 'Requests refused for a missing or wrong token, or because their address is locked out.',
      labelNames: ['endpoint', 'result'],
      registers: [registry],
    }),
    fetches: new Counter({
      name: `${PREFIX}fetch_attempts_total`,
      help: 'Recording fetch attempts (mode: download after READY, or poll) by outcome.',
      labelNames: ['mode', 'outcome'],
      registers: [registry],
    }),
    downloadedBytes: new Counter({
      name: `${PREFIX}downloaded_bytes_total`,
      help: 'Bytes of recordings downloaded and stored.',
      registers: [registry],
    }),
    downloadDuration: new Histogram({
      name: `${PREFIX}download_duration_seconds`,
      help: 'Time to download, verify and store a recording, for attempts that attached one.',
      labelNames: ['mode'],
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300],
      registers: [registry],
    }),
    deliveries: new Counter({
      name: `${PREFIX}delivery_attempts_total`,
      help: 'Delivery attempts to destinations (Chatwoot, outbound webhooks) by kind and outcome.',
      labelNames: ['destination', 'kind', 'outcome'],
      registers: [registry],
    }),
  };

  // A failing database must not fail the scrape: the counters and process metrics matter most
  // then. The database-backed gauges keep their last values, and database_up says why.
  const databaseUp = new Gauge({
    name: `${PREFIX}database_up`,
    help: '1 when the database answered this scrape, else 0 (the gauges read from it then keep their last values).',
    registers: [registry],
    async collect() {
      this.set(await checkDb(db).then(() => 1, () => 0));
    },
  });
  const fromDatabase = async (read: () => Promise<void>) => {
    try {
      await read();
    } catch {
      databaseUp.set(0);
    }
  };

  // One query per scrape for the three job gauges, whichever of them is collected first.
  let jobSummary: { at: number; value: Promise<Awaited<ReturnType<typeof summariseDueFetchJobs>>> } | undefined;
  const summariseJobs = () => {
    const now = clock.now();
    if (jobSummary === undefined || now - jobSummary.at > 1_000) jobSummary = { at: now, value: summariseDueFetchJobs(db, now) };
    return jobSummary.value;
  };
  new Gauge({
    name: `${PREFIX}fetch_jobs_running`,
    help: 'Fetch jobs being downloaded or polled right now, by any replica.',
    registers: [registry],
    async collect() {
      await fromDatabase(async () => {
        this.set((await summariseJobs()).running);
      });
    },
  });
  new Gauge({
    name: `${PREFIX}fetch_jobs_due`,
    help: 'Fetch jobs whose time has come, waiting for a download slot.',
    registers: [registry],
    async collect() {
      await fromDatabase(async () => {
        this.set((await summariseJobs()).waiting);
      });
    },
  });
  new Gauge({
    name: `${PREFIX}fetch_job_oldest_due_age_seconds`,
    help: 'How long the longest-waiting due fetch job has waited for a slot (0 when none waits): downloads falling behind.',
    registers: [registry],
    async collect() {
      await fromDatabase(async () => {
        const { oldestWaitingRunAt } = await summariseJobs();
        this.set(oldestWaitingRunAt === null ? 0 : Math.max(0, clock.now() - oldestWaitingRunAt) / 1000);
      });
    },
  });
  new Gauge({
    name: `${PREFIX}calls`,
    help: 'Calls by attachment state.',
    labelNames: ['attachment_state'],
    registers: [registry],
    async collect() {
      await fromDatabase(async () => {
        const counts = await countCallsByAttachmentState(db);
        for (const state of ATTACHMENT_STATES) this.set({ attachment_state: state }, counts.get(state) ?? 0);
      });
    },
  });
  new Gauge({
    name: `${PREFIX}seconds_since_last_webhook`,
    help: 'Time since the last webhook arrived, by any replica (counted from start-up while none ever has).',
    registers: [registry],
    async collect() {
      await fromDatabase(async () => {
        this.set((clock.now() - ((await findLatestEventReceivedAt(db)) ?? sources.startedAt)) / 1000);
      });
    },
  });

  new Gauge({
    name: `${PREFIX}devices_silent`,
    help: 'Devices that sent webhooks before and none for WEBHOOK_SILENCE_WARNING.',
    registers: [registry],
    async collect() {
      await fromDatabase(async () => {
        this.set(await countSilentDevices(db, clock.now() - sources.silenceThresholdMs));
      });
    },
  });
  new Gauge({
    name: `${PREFIX}device_seconds_since_last_webhook`,
    help: `Time since a silent device's last webhook (silent: none for WEBHOOK_SILENCE_WARNING), for up to ${MAX_SILENT_DEVICE_SERIES} silent devices, the most recently silent first; devices that are not silent have no series.`,
    labelNames: ['device', 'tenant'],
    registers: [registry],
    async collect() {
      await fromDatabase(async () => {
        const now = clock.now();
        const silent = await listSilentDevices(db, now - sources.silenceThresholdMs, MAX_SILENT_DEVICE_SERIES);
        // A device heard from again loses its series.
        this.reset();
        for (const device of silent) this.set({ device: device.deviceId, tenant: device.tenant ?? '' }, (now - device.lastSeenAt) / 1000);
      });
    },
  });

  registerDeliveryGauges(registry, sources, fromDatabase);
  return metrics;
}

/** Backlog, oldest wait and blocked state per destination, read from the database at scrape time. */
function registerDeliveryGauges(registry: Registry, sources: MetricsSources, fromDatabase: (read: () => Promise<void>) => Promise<void>): void {
  const { db, clock } = sources;
  const configured = sources.destinations ?? [];
  let summary: { at: number; value: Promise<Awaited<ReturnType<typeof summariseDeliveries>>> } | undefined;
  const summarise = () => {
    const now = clock.now();
    if (summary === undefined || now - summary.at > 1_000) summary = { at: now, value: summariseDeliveries(db, now) };
    return summary.value;
  };
  new Gauge({
    name: `${PREFIX}deliveries_waiting`,
    help: 'Deliveries not yet made, per destination (due, scheduled for a retry, or held by a blocked destination).',
    labelNames: ['destination'],
    registers: [registry],
    async collect() {
      await fromDatabase(async () => {
        const rows = new Map((await summarise()).map((row) => [row.destination, row.waiting]));
        for (const destination of new Set([...configured, ...rows.keys()])) this.set({ destination }, rows.get(destination) ?? 0);
      });
    },
  });
  new Gauge({
    name: `${PREFIX}delivery_oldest_due_age_seconds`,
    help: 'How long the longest-waiting due delivery has waited, per destination (0 when none): a destination falling behind.',
    labelNames: ['destination'],
    registers: [registry],
    async collect() {
      await fromDatabase(async () => {
        const now = clock.now();
        const rows = new Map((await summarise()).map((row) => [row.destination, row.oldestDueAt]));
        for (const destination of new Set([...configured, ...rows.keys()])) {
          const oldest = rows.get(destination) ?? null;
          this.set({ destination }, oldest === null ? 0 : Math.max(0, now - oldest) / 1000);
        }
      });
    },
  });
  new Gauge({
    name: `${PREFIX}destination_blocked`,
    help: '1 while a destination is blocked by wrong settings (401, 403, 404) or disabled by its receiver (410), else 0; the reason is in the log and GET /api/destinations.',
    labelNames: ['destination', 'state'],
    registers: [registry],
    async collect() {
      await fromDatabase(async () => {
        const states = await listDestinationStates(db);
        this.reset();
        for (const destination of configured) {
          const state = states.get(destination);
          this.set({ destination, state: state?.state ?? 'open' }, state === undefined ? 0 : 1);
        }
      });
    },
  });
}
