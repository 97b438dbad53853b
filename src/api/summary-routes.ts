import { Type } from 'typebox';
import { ATTACHMENT_STATES, type AttachmentState } from '../calls/call-state.ts';
import { countCallsByAttachmentState } from '../db/calls-repository.ts';
import { countSilentDevices } from '../db/devices-repository.ts';
import { findLatestEventReceivedAt } from '../db/events-repository.ts';
import { summariseDueFetchJobs } from '../db/fetch-jobs-repository.ts';
import { isDeviceSilent } from '../devices/device-status.ts';
import type { AppDeps } from '../http/app-deps.ts';
import { API_SECURITY, AUTH_ERRORS, IsoTime, SERVER_ERRORS, toIsoTime, type App } from '../http/schemas.ts';
import { checkApiAccess } from './api-auth.ts';
import { checkReadiness, ReadinessSchema } from './health-routes.ts';

const SummarySchema = Type.Object(
  {
    calls_by_state: Type.Object(Object.fromEntries(ATTACHMENT_STATES.map((state) => [state, Type.Integer()])) as Record<AttachmentState, ReturnType<typeof Type.Integer>>, {
      additionalProperties: false,
    }),
    downloads: Type.Object(
      { running: Type.Integer(), waiting: Type.Integer(), oldest_waiting_since: IsoTime },
      { additionalProperties: false },
    ),
    readiness: ReadinessSchema,
    webhooks: Type.Object(
      {
        last_received_at: IsoTime,
        silence_warning_seconds: Type.Number(),
        silent: Type.Boolean({ description: 'No webhook for longer than WEBHOOK_SILENCE_WARNING (counted from start-up when none ever arrived)' }),
      },
      { additionalProperties: false },
    ),
    devices_silent: Type.Integer(),
  },
  { additionalProperties: false, description: 'The counts' },
);

/** GET /api/summary: the dashboard's health strip in one request. */
export function registerSummaryRoutes(app: App, deps: AppDeps): void {
  const silenceMs = deps.config.webhookSilenceWarningMs;
  void app.register(
    async (api: App) => {
      api.addHook('onRequest', (request, reply) => checkApiAccess(deps, request, reply));

      // Requests arriving while one is computed share its answer: every open page asks after the
      // same live events, and counting calls by state is a pass over all of them.
      let inFlight: Promise<Summary> | undefined;
      api.get(
        '/summary',
        {
          schema: {
            summary: "The dashboard's health strip: calls by state, downloads, readiness, webhooks, silent devices",
            tags: ['health'],
            security: API_SECURITY,
            response: { 200: SummarySchema, ...AUTH_ERRORS, ...SERVER_ERRORS },
          },
        },
        async () => {
          inFlight ??= summarise().finally(() => {
            inFlight = undefined;
          });
          return inFlight;
        },
      );

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
          downloads: { running: jobs.running, waiting: jobs.waiting, oldest_waiting_since: toIsoTime(jobs.oldestWaitingRunAt) },
          readiness,
          webhooks: {
            last_received_at: toIsoTime(lastWebhookAt),
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
