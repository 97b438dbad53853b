import type { Generated } from 'kysely';

/** Times are milliseconds since the epoch, stored as integers on every dialect. */
interface EventsTable {
  seq: Generated<number>;
  event_id: string;
  received_at: number;
  type: string;
  call_id: string | null;
  payload: string;
  processed_at: number | null;
  processing_error: string | null;
  /** The label of the device-group webhook token the event came with; null for WEBHOOK_TOKEN. */
  tenant: string | null;
}

export interface CallsTable {
  call_id: string;
  direction: string | null;
  caller: string | null;
  receiver: string | null;
  device_id: string | null;
  status: string | null;
  was_connected: number;
  duration: number | null;
  record_status: string | null;
  record_url: string | null;
  first_seen_at: number;
  last_seen_at: number;
  ended_at: number | null;
  attachment_state: string;
  attachment_reason: string | null;
  recording_key: string | null;
  recording_size: number | null;
  recording_sha256: string | null;
  recording_content_type: string | null;
  recording_container: string | null;
  recording_codec: string | null;
  recording_duration_seconds: number | null;
  attached_at: number | null;
  tenant: string | null;
  // Since 004. Facts merged from events (see CallFacts):
  hinted_url: string | null;
  /** Comma-separated, sorted; null on rows from before 004, read as their `status`. */
  statuses_seen: string | null;
  active_at: number | null;
  call_type: string | null;
  peer_name: string | null;
  stated_peer_phone: string | null;
  device_reported_phone: string | null;
  // Since 004. Derived from the facts on every save (calls/call-details.ts), stored for the list filters;
  // `direction` above is WaVoIP's raw value. A null outcome: not derived yet (a row from before 004).
  direction_normalized: string | null;
  peer_phone: string | null;
  device_phone: string | null;
  outcome: string | null;
}

/** One fetch job per call: a poll waiting for the recording, or a download after READY. */
export interface FetchJobsTable {
  call_id: string;
  run_at: number;
  deadline_at: number;
  attempts: number;
  last_error: string | null;
  locked_until: number | null;
  locked_by: string | null;
  /** A new random value whenever an event (re)schedules the job, so a running attempt cannot overwrite it. */
  version: number;
  /** 0 claims before 1: a download of a recording known to be ready before a poll. */
  priority: number;
}

export interface DevicesTable {
  device_id: string;
  phone: string | null;
  /** As WaVoIP sent it in the latest DEVICE event. */
  status: string | null;
  normalized_status: string | null;
  /** When the latest DEVICE event carrying a status arrived. */
  status_at: number | null;
  /** When the normalised status last became what it is; a heartbeat repeating it does not move this. */
  status_changed_at: number | null;
  /** The latest webhook of any kind (DEVICE, CALL or RECORD) naming the device. */
  last_seen_at: number;
  tenant: string | null;
}

/** Webhook tokens of device groups: only a hash of each token is kept. */
export interface WebhookTokensTable {
  id: string;
  label: string;
  token_sha256: string;
  created_at: number;
  revoked_at: number | null;
}

/** The outbox: what each destination is to be told about a call, in order, leased like fetch jobs. */
export interface DeliveriesTable {
  id: string;
  call_id: string;
  destination: string;
  kind: string;
  fact: string;
  reason: string | null;
  position: number;
  serial_key: string | null;
  state: string;
  attempts: number;
  run_at: number;
  deadline_at: number;
  last_error: string | null;
  outcome_unknown: number;
  locked_until: number | null;
  locked_by: string | null;
  version: number;
  created_at: number;
  delivered_at: number | null;
  /** JSON: what the destination called it (Chatwoot ids, the webhook-id). */
  external_ids: string | null;
}

interface DestinationStatesTable {
  destination: string;
  state: string;
  reason: string;
  since: number;
  next_probe_at: number | null;
}

/** Dashboard sign-ins: only a hash of each session cookie is kept. */
interface DashboardSessionsTable {
  /** sha256 hex of the cookie's value. */
  id_hash: string;
  csrf_token: string;
  created_at: number;
  expires_at: number;
}

export interface Database {
  events: EventsTable;
  calls: CallsTable;
  fetch_jobs: FetchJobsTable;
  devices: DevicesTable;
  webhook_tokens: WebhookTokensTable;
  deliveries: DeliveriesTable;
  destination_states: DestinationStatesTable;
  dashboard_sessions: DashboardSessionsTable;
}
