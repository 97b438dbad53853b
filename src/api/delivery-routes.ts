import { Type } from 'typebox';
import { findCall } from '../db/calls-repository.ts';
import { listCallDeliveries } from '../db/deliveries-repository.ts';
import { listDestinationStates, resetDestination } from '../db/destination-states-repository.ts';
import { parseIsoTime } from './call-filters.ts';
import { RECORDING_LINK_PATH } from '../delivery/recording-link.ts';
import type { AppDeps } from '../http/app-deps.ts';
import { checkApiAccess } from './api-auth.ts';
import { DeliverySchema, presentDelivery } from './call-view.ts';
import { RECORDING_QUERY_SCHEMA, RECORDING_RESPONSES, sendRecording } from './recording-response.ts';
import { API_SECURITY, AUTH_ERRORS, BODY_ERRORS, CSRF_ERROR, errorBody, IsoTime, nullable, SERVER_ERRORS, stringEnum, type App } from '../http/schemas.ts';

const TAGS = ['deliveries'];
const NO_DESTINATION = { 409: errorBody('No destination is configured (OUTBOUND_WEBHOOK_URLS, CHATWOOT_URL)') } as const;
const DESTINATION_STATES = ['open', 'blocked', 'disabled'] as const;

/**
 * Deliveries to destinations: sending a call again, backfilling calls from before a destination
 * was configured, the destinations' state; and the signed recording links outbound webhooks carry.
 */
export function registerDeliveryRoutes(app: App, deps: AppDeps): void {
  const { outbox } = deps.deliveries;

  // No API token: the link itself is the credential, until it expires.
  app.get(
    `${RECORDING_LINK_PATH}/:token`,
    {
      schema: {
        summary: 'A recording by the signed link an outbound webhook carried (the link is the credential)',
        tags: TAGS,
        params: Type.Object({ token: Type.String() }),
        querystring: RECORDING_QUERY_SCHEMA,
        response: {
          ...RECORDING_RESPONSES,
          403: errorBody('Not a valid recording link, or an expired one'),
          404: errorBody('The recording left the storage while being served'),
          410: errorBody('The recording is no longer available'),
        },
      },
    },
    async (request, reply) => {
      // The link is a credential: never cached by a proxy, nor passed on as a Referer.
      reply.header('cache-control', 'private, no-store').header('referrer-policy', 'no-referrer');
      const checked = deps.deliveries.links?.check(request.params.token, deps.clock.now()) ?? { ok: false as const, reason: 'invalid' as const };
      if (!checked.ok) {
        return reply.code(403).send({ error: checked.reason === 'expired' ? 'this recording link has expired' : 'this is not a valid recording link' });
      }
      const call = await findCall(deps.db, checked.callId);
      if (call?.attachment.state === 'expired') return reply.code(410).send({ error: `the recording is gone: ${call.attachment.reason ?? 'it was deleted'}` });
      const key = call?.recording?.key ?? null;
      const stat = key === null ? null : await deps.store.stat(key);
      if (call === null || call.recording === null || key === null || stat === null) {
        return reply.code(410).send({ error: 'the recording is no longer available' });
      }
      return sendRecording(request, reply, deps, { callId: call.callId, key, contentType: call.recording.contentType, sha256: call.recording.sha256, size: stat.size });
    },
  );

  void app.register(
    async (api: App) => {
      api.addHook('onRequest', (request, reply) => checkApiAccess(deps, request, reply));

      api.post(
        '/calls/:id/redeliver',
        {
          schema: {
            summary: 'Send a call to its destinations again (or to one)',
            tags: TAGS,
            security: API_SECURITY,
            params: Type.Object({ id: Type.String({ description: 'The whatsapp_call_id' }) }),
            querystring: Type.Object(
              { destination: Type.Optional(Type.String({ maxLength: 2048, description: 'One destination (as GET /api/destinations names it); all by default' })) },
              { additionalProperties: false },
            ),
            response: {
              202: Type.Object(
                { whatsapp_call_id: Type.String(), added: Type.Integer({ description: 'New deliveries' }), deliveries: Type.Array(DeliverySchema) },
                { additionalProperties: false, description: "Scheduled; the call's deliveries" },
              ),
              404: errorBody('No call with this whatsapp_call_id'),
              ...NO_DESTINATION,
              ...BODY_ERRORS,
              ...AUTH_ERRORS,
              ...CSRF_ERROR,
              ...SERVER_ERRORS,
            },
          },
        },
        async (request, reply) => {
          const { destination } = request.query;
          const names = outbox.destinations.map((each) => each.name);
          if (names.length === 0) return reply.code(409).send({ error: 'no destination is configured (OUTBOUND_WEBHOOK_URLS, CHATWOOT_URL)' });
          if (destination !== undefined && !names.includes(destination)) {
            return reply.code(400).send({ error: `destination must be one of ${names.map((name) => JSON.stringify(name)).join(', ')}`, field: 'destination' });
          }
          const added = await outbox.redeliver(deps.db, request.params.id, deps.clock.now(), destination);
          if (added === null) return reply.code(404).send({ error: `no call with whatsapp_call_id ${JSON.stringify(request.params.id)}` });
          deps.logger.info({ call_id: request.params.id, destination, added }, `[Deliveries] Redelivery of call ${request.params.id} requested: ${added} new deliveries`);
          if (added > 0) {
            deps.deliveries.due();
            deps.callChanges.announce([request.params.id]);
          }
          const deliveries = await listCallDeliveries(deps.db, request.params.id);
          return reply.code(202).send({ whatsapp_call_id: request.params.id, added, deliveries: deliveries.map(presentDelivery) });
        },
      );

      api.post(
        '/deliveries/backfill',
        {
          schema: {
            summary: 'Deliver the calls since a date to every destination that has not had them',
            tags: TAGS,
            security: API_SECURITY,
            querystring: Type.Object({ since: Type.String({ maxLength: 64, description: 'ISO 8601 date or time with its offset' }) }, { additionalProperties: false }),
            response: {
              202: Type.Object(
                { since: IsoTime, calls: Type.Integer(), deliveries: Type.Integer({ description: 'New deliveries' }) },
                { additionalProperties: false, description: 'Scheduled' },
              ),
              ...NO_DESTINATION,
              ...BODY_ERRORS,
              ...AUTH_ERRORS,
              ...CSRF_ERROR,
              ...SERVER_ERRORS,
            },
          },
        },
        async (request, reply) => {
          const since = parseIsoTime(request.query.since);
          if (since === null) return reply.code(400).send({ error: 'since must be a date such as 2024-05-01 or 2024-05-01T12:00:00Z', field: 'since' });
          if (outbox.destinations.length === 0) return reply.code(409).send({ error: 'no destination is configured (OUTBOUND_WEBHOOK_URLS, CHATWOOT_URL)' });
          const result = await outbox.backfill(deps.db, since, deps.clock.now());
          deps.logger.info({ since: new Date(since).toISOString(), ...result }, `[Deliveries] Backfill since ${new Date(since).toISOString()}: ${result.deliveries} deliveries for ${result.calls} calls`);
          if (result.deliveries > 0) {
            deps.deliveries.due();
            deps.callChanges.announceResync();
          }
          return reply.code(202).send({ since: new Date(since).toISOString(), calls: result.calls, deliveries: result.deliveries });
        },
      );

      // After fixing a receiver that answered 410, or to retry a blocked one now rather than at its next probe.
      api.post(
        '/destinations/reset',
        {
          schema: {
            summary: 'Open a blocked or disabled destination again',
            tags: TAGS,
            security: API_SECURITY,
            querystring: Type.Object({ destination: Type.String({ maxLength: 2048 }) }, { additionalProperties: false }),
            response: {
              200: Type.Object(
                { name: Type.String(), state: stringEnum(['open']), was: nullable(stringEnum(DESTINATION_STATES.filter((state) => state !== 'open'))) },
                { additionalProperties: false, description: 'Open again' },
              ),
              ...BODY_ERRORS,
              ...AUTH_ERRORS,
              ...CSRF_ERROR,
              ...SERVER_ERRORS,
            },
          },
        },
        async (request, reply) => {
          const { destination } = request.query;
          const names = outbox.destinations.map((each) => each.name);
          if (!names.includes(destination)) {
            return reply.code(400).send({ error: `destination must be one of ${names.map((name) => JSON.stringify(name)).join(', ') || '(none configured)'}`, field: 'destination' });
          }
          const was = await resetDestination(deps.db, destination);
          deps.logger.info({ destination, was }, `[Deliveries] ${destination} reset by an operator (was ${was ?? 'open'}); it takes deliveries again`);
          deps.deliveries.due();
          return { name: destination, state: 'open' as const, was };
        },
      );

      api.get(
        '/destinations',
        {
          schema: {
            summary: 'The configured destinations and their state',
            tags: TAGS,
            security: API_SECURITY,
            response: {
              200: Type.Object(
                {
                  destinations: Type.Array(
                    Type.Object(
                      { name: Type.String(), state: stringEnum(DESTINATION_STATES), reason: nullable(Type.String()), since: IsoTime },
                      { additionalProperties: false },
                    ),
                  ),
                },
                { additionalProperties: false, description: 'Every destination' },
              ),
              ...AUTH_ERRORS,
              ...SERVER_ERRORS,
            },
          },
        },
        async () => {
          const states = await listDestinationStates(deps.db);
          return {
            destinations: outbox.destinations.map(({ name }) => {
              const state = states.get(name);
              return { name, state: state?.state ?? ('open' as const), reason: state?.reason ?? null, since: state ? new Date(state.since).toISOString() : null };
            }),
          };
        },
      );
    },
    { prefix: '/api' },
  );
}
