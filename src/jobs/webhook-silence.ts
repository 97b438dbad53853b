import type { Clock } from '../clock.ts';
import type { Db } from '../db/database.ts';
import type { Logger } from '../log/logger.ts';
import { findLatestEventReceivedAt } from '../db/events-repository.ts';
import { formatDuration } from '../units.ts';
import { WEBHOOK_PATH } from '../webhook/webhook-routes.ts';
import { createPeriodicTask, type PeriodicTask } from './periodic.ts';

const LONGEST_INTERVAL_MS = 60_000;

/**
 * Warns when no webhook has arrived for WEBHOOK_SILENCE_WARNING, once per such period of
 * silence, counted from the last webhook stored (or from start-up while none ever came). The
 * usual fault is a device whose panel never got the webhook URL, which otherwise goes unnoticed
 * until someone looks for a recording.
 */
export function createWebhookSilenceMonitor(deps: { db: Db; clock: Clock; logger: Logger; thresholdMs: number; startedAt: number }): PeriodicTask {
  const { db, clock, logger, thresholdMs, startedAt } = deps;
  let warned = { since: Number.NaN, periods: 0 };

  async function check(): Promise<void> {
    // Stored, so the count survives restarts: a service redeployed daily must still warn.
    const lastWebhookAt = await findLatestEventReceivedAt(db);
    const since = lastWebhookAt ?? startedAt;
    const periods = Math.floor((clock.now() - since) / thresholdMs);
    if (since !== warned.since) warned = { since, periods: 0 };
    if (periods <= warned.periods) return;
    warned.periods = periods;
    logger.warn(
      { last_webhook_at: lastWebhookAt === null ? null : new Date(lastWebhookAt).toISOString(), silent_for_ms: clock.now() - since },
      `[WaVoIP Webhook] No webhook has arrived for ${formatDuration(periods * thresholdMs)} ` +
        `(${lastWebhookAt === null ? 'none has ever arrived; counting from start-up' : `since ${new Date(lastWebhookAt).toISOString()}`}). ` +
        `If devices are making calls, check that each device's WaVoIP panel sends its webhook to https://your-host${WEBHOOK_PATH}?token=<WEBHOOK_TOKEN> and that this address is reachable.`,
    );
  }

  const intervalMs = Math.max(1_000, Math.min(LONGEST_INTERVAL_MS, Math.floor(thresholdMs / 10)));
  return createPeriodicTask(check, intervalMs, (error) => logger.warn({ err: error }, `[WaVoIP Webhook] Could not check for webhook silence: ${error.message}`));
}
