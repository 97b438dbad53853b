import type { Clock } from '../clock.ts';
import type { Db } from '../db/database.ts';
import { listSilentDevices, type StoredDevice } from '../db/devices-repository.ts';
import type { Logger } from '../log/logger.ts';
import { findLatestEventReceivedAt } from '../db/events-repository.ts';
import { toE164 } from '../calls/phone-number.ts';
import { formatDuration } from '../units.ts';
import { createPeriodicTask, type PeriodicTask } from './periodic.ts';

const LONGEST_INTERVAL_MS = 60_000;
/** Devices named one line each per check; beyond that (a WaVoIP outage, say) one line counts the rest. */
const MAX_DEVICE_LINES = 10;

/** How many whole silence periods have passed since `since`, and how many were warned of. */
interface Warned {
  since: number;
  periods: number;
}

/**
 * Warns when no webhook has arrived for WEBHOOK_SILENCE_WARNING, once per such period of
 * silence, counted from the last webhook stored (or from start-up while none ever came). The
 * usual fault is a device whose panel never got the webhook URL, which otherwise goes unnoticed
 * until someone looks for a recording. Each device that has sent webhooks and then gone quiet
 * that long is named too, on the same schedule: its panel lost the URL, or the device is off.
 * `webhookPath` is where the service takes webhooks, for the warning to say where to point the panel.
 */
export function createWebhookSilenceMonitor(deps: {
  db: Db;
  clock: Clock;
  logger: Logger;
  thresholdMs: number;
  startedAt: number;
  webhookPath: string;
}): PeriodicTask {
  const { db, clock, logger, thresholdMs, startedAt, webhookPath } = deps;
  let warned: Warned = { since: Number.NaN, periods: 0 };
  // Silent devices only: an entry goes once its device is heard from again.
  let warnedDevices = new Map<string, Warned>();

  /** True when `periods` of silence since `since` have not been warned of yet; then they are. */
  function due(previous: Warned | undefined, since: number, now: number): Warned | null {
    const periods = Math.floor((now - since) / thresholdMs);
    const already = previous?.since === since ? previous.periods : 0;
    return periods > already ? { since, periods } : null;
  }

  async function checkAll(): Promise<void> {
    // Stored, so the count survives restarts: a service redeployed daily must still warn.
    const lastWebhookAt = await findLatestEventReceivedAt(db);
    const since = lastWebhookAt ?? startedAt;
    const now = clock.now();
    const next = due(warned, since, now);
    if (next === null) return;
    warned = next;
    logger.warn(
      { last_webhook_at: lastWebhookAt === null ? null : new Date(lastWebhookAt).toISOString(), silent_for_ms: now - since },
      `[WaVoIP Webhook] No webhook has arrived for ${formatDuration(next.periods * thresholdMs)} ` +
        `(${lastWebhookAt === null ? 'none has ever arrived; counting from start-up' : `since ${new Date(lastWebhookAt).toISOString()}`}). ` +
        `If devices are making calls, check that each device's WaVoIP panel sends its webhook to https://your-host${webhookPath}?token=<WEBHOOK_TOKEN> and that this address is reachable.`,
    );
  }

  async function checkDevices(): Promise<void> {
    const now = clock.now();
    const silent = await listSilentDevices(db, now - thresholdMs);
    const still = new Map<string, Warned>();
    const newlyDue: { device: StoredDevice; periods: number }[] = [];
    for (const device of silent) {
      const previous = warnedDevices.get(device.deviceId);
      const next = due(previous, device.lastSeenAt, now);
      still.set(device.deviceId, next ?? (previous as Warned));
      if (next !== null) newlyDue.push({ device, periods: next.periods });
    }
    warnedDevices = still;
    for (const { device, periods } of newlyDue.slice(0, MAX_DEVICE_LINES)) {
      const lastWebhookAt = new Date(device.lastSeenAt).toISOString();
      const phone = toE164(device.phone) ?? device.phone;
      logger.warn(
        { device_id: device.deviceId, phone, tenant: device.tenant ?? undefined, last_webhook_at: lastWebhookAt, silent_for_ms: now - device.lastSeenAt },
        `[WaVoIP Webhook] Device ${device.deviceId}${phone === null ? '' : ` (${phone})`}${device.tenant === null ? '' : ` of device group ${device.tenant}`} ` +
          `has sent no webhook for ${formatDuration(periods * thresholdMs)} (since ${lastWebhookAt}). ` +
          "Check that the device is connected and that its WaVoIP panel still sends its webhook here.",
      );
    }
    const more = newlyDue.slice(MAX_DEVICE_LINES);
    if (more.length > 0) {
      logger.warn(
        { device_ids: more.map(({ device }) => device.deviceId) },
        `[WaVoIP Webhook] ${more.length} more devices have sent no webhook for ${formatDuration(thresholdMs)} or longer; GET /api/devices?silent=true lists every silent device`,
      );
    }
  }

  const intervalMs = Math.max(1_000, Math.min(LONGEST_INTERVAL_MS, Math.floor(thresholdMs / 10)));
  return createPeriodicTask(
    async () => {
      await checkAll();
      await checkDevices();
    },
    intervalMs,
    (error) => logger.warn({ err: error }, `[WaVoIP Webhook] Could not check for webhook silence: ${error.message}`),
  );
}
