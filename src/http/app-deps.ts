import type { Clock } from '../clock.ts';
import type { Config } from '../config/config.ts';
import type { Db } from '../db/database.ts';
import type { DashboardSessions } from '../dashboard/dashboard-sessions.ts';
import type { DeliveryOutbox } from '../delivery/outbox.ts';
import type { RecordingLinks } from '../delivery/recording-link.ts';
import type { CallChanges } from '../live/call-changes.ts';
import type { Logger } from '../log/logger.ts';
import type { Metrics } from '../metrics/metrics.ts';
import type { RecordingStore } from '../storage/recording-store.ts';
import type { EventWriter } from '../webhook/event-writer.ts';
import type { EventProcessor } from '../webhook/process-events.ts';
import type { WebhookTokens } from '../webhook/webhook-tokens.ts';
import type { SecretGuard } from './secret-guard.ts';

/** What the HTTP routes need, handed in explicitly rather than hung off the Fastify instance. */
export interface AppDeps {
  config: Config;
  logger: Logger;
  clock: Clock;
  /** When this process started: webhook silence counts from it until a first webhook arrives. */
  startedAt: number;
  db: Db;
  store: RecordingStore;
  apiToken: string;
  /** Null: webhooks need no token (WEBHOOK_TOKEN=none). */
  webhookToken: string | null;
  /** Device groups' webhook tokens, whose events get the group's label as their tenant. */
  webhookTokens: WebhookTokens;
  eventWriter: EventWriter;
  events: EventProcessor;
  /** A fetch job is due now: wakes this replica's scheduler and tells the others. */
  fetchJobsDue: () => void;
  metrics: Metrics;
  deliveries: {
    outbox: DeliveryOutbox;
    /** Null: no outbound webhooks, so no recording link was ever given out. */
    links: RecordingLinks | null;
    /** New deliveries are due now: wakes this replica's delivery scheduler and tells the others. */
    due: () => void;
  };
  /** Dashboard sign-ins; null with DASHBOARD=false (the API then takes only the bearer token). */
  sessions: DashboardSessions | null;
  /** Announces changed calls to every replica's live streams (GET /api/live). */
  callChanges: CallChanges;
  /** Separate counts: guessing at the API must not lock out webhooks from the same address. */
  secretGuards: { webhook: SecretGuard; api: SecretGuard };
}
