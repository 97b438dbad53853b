import type { FastifyReply } from 'fastify';
import { Type } from 'typebox';
import { findCall, listCalls, type StoredCall } from '../db/calls-repository.ts';
import { listCallDeliveries } from '../db/deliveries-repository.ts';
import { listCallEvents } from '../db/events-repository.ts';
import { findFetchJob, findFetchJobs } from '../db/fetch-jobs-repository.ts';
import type { AppDeps } from '../http/app-deps.ts';
import { retryAllFetches, retryFetch } from '../jobs/retry-fetch.ts';
import { API_SECURITY, AUTH_ERRORS, BODY_ERRORS, CSRF_ERROR, errorBody, nullable, SERVER_ERRORS, stringEnum, type App } from '../http/schemas.ts';
import { checkApiAccess } from './api-auth.ts';
import { LIST_QUERY_SCHEMA, readCallFilters } from './call-filters.ts';
import { CallDetailsSchema, CallSchema, presentCall, presentDelivery, presentEvent } from './call-view.ts';
import { RECORDING_QUERY_SCHEMA, RECORDING_RESPONSES, sendRecording } from './recording-response.ts';

const CALL_PARAMS = Type.Object({ id: Type.String({ description: 'The whatsapp_call_id' }) });
const UNKNOWN_CALL = { 404: errorBody('No call with this whatsapp_call_id') } as const;
const TAGS = ['calls'];

/** The read API: everything under /api needs the API token or a dashboard session (src/api/api-auth.ts). */
export function registerCallRoutes(app: App, deps: AppDeps): void {
  void app.register(
    async (api: App) => {
      api.addHook('onRequest', (request, reply) => checkApiAccess(deps, request, reply));

      api.get(
        '/calls',
        {
          schema: {
            summary: 'List calls, newest first, by page',
            tags: TAGS,
            security: API_SECURITY,
            querystring: LIST_QUERY_SCHEMA,
            response: {
              200: Type.Object(
                { calls: Type.Array(CallSchema), next_cursor: nullable(Type.String({ description: 'Pass as `cursor` for the next page; null on the last' })) },
                { additionalProperties: false, description: 'A page of calls' },
              ),
              400: errorBody('A filter or the cursor was refused; `field` names it'),
              ...AUTH_ERRORS,
              ...SERVER_ERRORS,
            },
          },
        },
        async (request, reply) => {
          // The schema lets "Infinity" through as an integer; SQLite would refuse it with a 500.
          if (!Number.isSafeInteger(request.query.limit)) {
            return reply.code(400).send({ error: 'querystring/limit must be a whole number from 1 to 200', field: 'limit' });
          }
          const after = request.query.cursor === undefined ? undefined : decodeCursor(request.query.cursor);
          if (after === null) return reply.code(400).send({ error: 'cursor is not one this API returned', field: 'cursor' });
          const read = readCallFilters(request.query);
          if (!read.ok) return reply.code(400).send({ error: read.error, field: read.field });
          const page = await listCalls(deps.db, { ...read.filters, limit: request.query.limit, after });
          const jobs = await findFetchJobs(deps.db, page.calls.map((call) => call.callId));
          const last = page.calls.at(-1);
          return {
            calls: page.calls.map((call) => presentCall(call, jobs.get(call.callId))),
            next_cursor: page.hasMore && last ? encodeCursor(last.firstSeenAt, last.callId) : null,
          };
        },
      );

      api.get(
        '/calls/:id',
        {
          schema: {
            summary: 'One call, with its deliveries and the events received for it',
            tags: TAGS,
            security: API_SECURITY,
            params: CALL_PARAMS,
            response: { 200: Type.Object(CallDetailsSchema.properties, { additionalProperties: false, description: 'The call' }), ...UNKNOWN_CALL, ...AUTH_ERRORS, ...SERVER_ERRORS },
          },
        },
        async (request, reply) => {
          const call = await findCall(deps.db, request.params.id);
          if (call === null) return sendUnknownCall(reply, request.params.id);
          const [job, events, deliveries] = await Promise.all([
            findFetchJob(deps.db, call.callId),
            listCallEvents(deps.db, call.callId),
            listCallDeliveries(deps.db, call.callId),
          ]);
          return { ...presentCall(call, job), deliveries: deliveries.map(presentDelivery), events: events.map(presentEvent) };
        },
      );

      api.get(
        '/calls/:id/recording',
        {
          schema: {
            summary: "The call's recording; HEAD, Range, If-None-Match and If-Range are honoured",
            tags: TAGS,
            security: API_SECURITY,
            params: CALL_PARAMS,
            querystring: RECORDING_QUERY_SCHEMA,
            response: {
              ...RECORDING_RESPONSES,
              404: errorBody('No such call, or it has no recording'),
              410: errorBody('The recording was deleted by RECORDING_RETENTION'),
              ...AUTH_ERRORS,
            },
          },
        },
        async (request, reply) => {
          const call = await findCall(deps.db, request.params.id);
          if (call === null) return sendUnknownCall(reply, request.params.id);
          if (call.attachment.state === 'expired') {
            return reply.code(410).send({ error: `call ${call.callId} had a recording; ${call.attachment.reason ?? 'it was deleted'}` });
          }
          const key = call.recording?.key ?? null;
          const stat = key === null ? null : await deps.store.stat(key);
          if (call.recording === null || key === null || stat === null) {
            return reply.code(404).send({ error: `call ${call.callId} has no recording (attachment is ${call.attachment.state})` });
          }
          return sendRecording(request, reply, deps, { callId: call.callId, key, contentType: call.recording.contentType, sha256: call.recording.sha256, size: stat.size });
        },
      );

      api.post(
        '/calls/:id/retry',
        {
          schema: {
            summary: "Fetch a failed call's recording again, or a pending one now",
            tags: TAGS,
            security: API_SECURITY,
            params: CALL_PARAMS,
            response: {
              202: Type.Object(CallSchema.properties, { additionalProperties: false, description: 'The call, its fetch scheduled for now' }),
              ...UNKNOWN_CALL,
              409: errorBody('The recording is neither failed nor pending'),
              ...BODY_ERRORS,
              ...AUTH_ERRORS,
              ...CSRF_ERROR,
              ...SERVER_ERRORS,
            },
          },
        },
        async (request, reply) => {
          const callId = request.params.id;
          const outcome = await retryFetch(deps, callId);
          if (outcome.result === 'unknown') return sendUnknownCall(reply, callId);
          if (outcome.result === 'refused') {
            return reply.code(409).send({ error: `call ${callId} is ${outcome.state}; only a failed or pending recording can be retried` });
          }
          const [call, job] = await Promise.all([findCall(deps.db, callId), findFetchJob(deps.db, callId)]);
          return reply.code(202).send(presentCall(call as StoredCall, job));
        },
      );

      api.post(
        '/calls/retry',
        {
          schema: {
            summary: 'Fetch every failed recording again, or every pending one now',
            tags: TAGS,
            security: API_SECURITY,
            querystring: Type.Object({ state: stringEnum(['pending', 'failed']) }, { additionalProperties: false }),
            response: {
              202: Type.Object(
                { state: stringEnum(['pending', 'failed']), retried: Type.Integer({ description: 'How many calls are to be fetched now' }) },
                { additionalProperties: false, description: 'Scheduled' },
              ),
              ...BODY_ERRORS,
              ...AUTH_ERRORS,
              ...CSRF_ERROR,
              ...SERVER_ERRORS,
            },
          },
        },
        async (request, reply) => {
          const { state } = request.query;
          const retried = await retryAllFetches(deps, state);
          return reply.code(202).send({ state, retried });
        },
      );
    },
    { prefix: '/api' },
  );
}

function sendUnknownCall(reply: FastifyReply, callId: string) {
  return reply.code(404).send({ error: `no call with whatsapp_call_id ${JSON.stringify(callId)}` });
}

function encodeCursor(firstSeenAt: number, callId: string): string {
  return Buffer.from(JSON.stringify([firstSeenAt, callId])).toString('base64url');
}

function decodeCursor(cursor: string): { firstSeenAt: number; callId: string } | null {
  try {
    const value: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
    // A NUL is in no call id (PostgreSQL would refuse it): refused here, where the 400 can name `cursor`.
    if (Array.isArray(value) && Number.isSafeInteger(value[0]) && typeof value[1] === 'string' && !value[1].includes('\u0000')) {
      return { firstSeenAt: value[0] as number, callId: value[1] };
    }
  } catch {
    // falls through to the refusal below
  }
  return null;
}
