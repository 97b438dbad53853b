import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { ATTACHMENT_STATES } from '../calls/call-state.ts';
import type { Clock } from '../clock.ts';
import { countCallsByAttachmentState } from '../db/calls-repository.ts';
import type { Db } from '../db/database.ts';
import { findLatestEventReceivedAt } from '../db/events-repository.ts';
import { summariseDueFetchJobs } from '../db/fetch-jobs-repository.ts';

export type WebhookResult = 'accepted' | 'invalid' | 'unauthorized' | 'locked_out' | 'unavailable';
/** superseded: an event or another attempt changed the call meanwhile, and this attempt gave way. */
export type FetchOutcome = 'attached' | 'retry' | 'failed' | 'interrupted' | 'superseded';

/** Every instrument the service records, on a registry of its own (not prom-client's global one). */
export interface Metrics {
  registry: Registry;
  webhooks: Counter<'type' | 'result'>;
  intakeDuration: Histogram;
  authFailures: Counter<'endpoint' | 'result'>;
  fetches: Counter<'mode' | 'outcome'>;
  downloadedBytes: Counter;
  downloadDuration: Histogram<'mode'>;
}

export interface MetricsSources {
  db: Db;
  clock: Clock;
  /** The moment from which silence is counted when no webhook has arrived since start-up. */
  startedAt: number;
}

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
  };

  new Gauge({
    name: `${PREFIX}fetch_jobs_due`,
    help: 'Fetch jobs whose time has come, running or waiting for a download slot.',
    registers: [registry],
    async collect() {
      this.set((await summariseDueFetchJobs(db, clock.now())).due);
    },
  });
  new Gauge({
    name: `${PREFIX}fetch_job_oldest_due_age_seconds`,
    help: 'How long the longest-waiting due fetch job has been due (0 when none is due).',
    registers: [registry],
    async collect() {
      const now = clock.now();
      const { oldestRunAt } = await summariseDueFetchJobs(db, now);
      this.set(oldestRunAt === null ? 0 : (now - oldestRunAt) / 1000);
    },
  });
  new Gauge({
    name: `${PREFIX}calls`,
    help: 'Calls by attachment state.',
    labelNames: ['attachment_state'],
    registers: [registry],
    async collect() {
      const counts = await countCallsByAttachmentState(db);
      for (const state of ATTACHMENT_STATES) this.set({ attachment_state: state }, counts.get(state) ?? 0);
    },
  });
  new Gauge({
    name: `${PREFIX}seconds_since_last_webhook`,
    help: 'Time since the last webhook arrived (counted from start-up when none has since).',
    registers: [registry],
    async collect() {
      this.set((clock.now() - (await lastWebhookOrStart(db, sources.startedAt))) / 1000);
    },
  });

  return metrics;
}

/** The reference for webhook silence: the newest event, or start-up if that is later. */
export async function lastWebhookOrStart(db: Db, startedAt: number): Promise<number> {
  return Math.max(startedAt, (await findLatestEventReceivedAt(db)) ?? 0);
}
