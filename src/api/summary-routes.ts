import type { FastifyInstance } from 'fastify';
import { ATTACHMENT_STATES, type AttachmentState } from '../calls/call-state.ts';
import { countCallsByAttachmentState } from '../db/calls-repository.ts';
import { countSilentDevices } from '../db/devices-repository.ts';
import { findLatestEventReceivedAt } from '../db/events-repository.ts';
import { summariseDueFetchJobs } from '../db/fetch-jobs-repository.ts';
import { isDeviceSilent } from '../devices/device-status.ts';
import type { AppDeps } from '../http/app-deps.ts';
import { checkApiAccess } from './api-auth.ts';
import { checkReadiness } from './health-routes.ts';

const isoTime = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

/** GET /api/summary: the dashboard's health strip in one request. */
export function registerSummaryRoutes(app: FastifyInstance, deps: AppDeps): void {
  const silenceMs = deps.config.webhookSilenceWarningMs;
  void app.register(
    async (api) => {
      api.addHook('onRequest', (request, reply) => checkApiAccess(deps, request, reply));

      // Requests arriving while one is computed share its answer: every open page asks after the
      // same live events, and counting calls by state is a pass over all of them.
      let inFlight: Promise<Summary> | undefined;
      api.get('/summary', async () => {
        inFlight ??= summarise().finally(() => {
          inFlight = undefined;
        });
        return inFlight;
      });

      async function summarise() {
        const now = deps.clock.now();
        const [byState, jobs, lastWebhookAt, devicesSilent, readiness] = await Promise.all([
          countCallsByAttachmentState(deps.db),
          summariseDueFetchJobs(deps.db, now),
          findLatestEventReceivedAt(deps.db),
          countSilentDevices(deps.db, now - silenceMs),
          checkReadiness(deps),
        ]);
        const callsByState = Object.fromEntries(ATTACHMENT_STATES.map((state) => [state, byState.get(state) ?? 0])) as Record<AttachmentState, number>;
        return {
          calls_by_state: callsByState,
          downloads: { running: jobs.running, waiting: jobs.waiting, oldest_waiting_since: isoTime(jobs.oldestWaitingRunAt) },
          readiness,
          webhooks: {
            last_received_at: isoTime(lastWebhookAt),
            silence_warning_seconds: silenceMs / 1000,
            // As the silence warning in the log counts it: from start-up when none has ever arrived.
            silent: isDeviceSilent(lastWebhookAt ?? deps.startedAt, now, silenceMs),
          },
          devices_silent: devicesSilent,
        };
      }
      type Summary = Awaited<ReturnType<typeof summarise>>;
    },
    { prefix: '/api' },
  );
}
