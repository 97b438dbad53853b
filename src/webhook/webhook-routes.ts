import { randomUUID } from 'node:crypto';
import { Type } from 'typebox';
import { normalizeWebhookPayload } from '../calls/webhook-event.ts';
import type { AppDeps } from '../http/app-deps.ts';
import { BODY_ERRORS, errorBody, mediaBody, SERVER_ERRORS, type App } from '../http/schemas.ts';
import { sendRefusal } from '../http/secret-guard.ts';
import { secretsMatch } from '../http/secrets.ts';
import type { WebhookResult } from '../metrics/metrics.ts';
import { createRefusalLog } from './refusal-log.ts';
import type { WebhookTokenMatch } from './webhook-tokens.ts';

export const WEBHOOK_PATH = '/webhooks/wavoip';
const TAGS = ['webhook'];
/** The token goes in the query (WaVoIP's webhook settings take only a URL) or in a header. */
const WEBHOOK_SECURITY: { [scheme: string]: string[] }[] = [{ webhookToken: [] }, { webhookTokenHeader: [] }];

/**
 * Intake: validate, store the raw event, answer. The 200 is sent only once the event is
 * committed; applying it to the call happens afterwards, in the event processor.
 */
export function registerWebhookRoutes(app: App, deps: AppDeps): void {
  const { webhookToken, webhookTokens, clock, logger, events, eventWriter, metrics, secretGuards } = deps;
  // The event type, for the metrics, of requests whose body became an event.
  const eventTypes = new WeakMap<object, string>();
  // Why a request was refused, for the log: set where it is refused.
  const refusals = new WeakMap<object, string>();
  // The device group whose token a request presented (revoked or not), found while checking it.
  const groups = new WeakMap<object, WebhookTokenMatch>();
  const tenantOf = (request: object) => {
    const group = groups.get(request);
    return group === undefined || group.revokedAt !== null ? null : group.label;
  };
  const refusalLog = createRefusalLog({ logger, clock });
  refusalLog.start();
  app.addHook('onClose', async () => refusalLog.stop());

  app.get(
    WEBHOOK_PATH,
    {
      schema: {
        summary: 'Says the webhook URL is reachable (for a person trying it in a browser)',
        tags: TAGS,
        response: { 200: mediaBody('A line of text', 'text/plain'), ...SERVER_ERRORS },
      },
    },
    async (_request, reply) =>
      reply
        .type('text/plain; charset=utf-8')
        .send('wavoip-recordings is reachable: point the WaVoIP webhook here (POST, JSON; CALL and RECORD events).\n'),
  );

  app.post(
    WEBHOOK_PATH,
    {
      schema: {
        summary: 'A WaVoIP event (CALL, RECORD, DEVICE): stored, then answered',
        description: 'The 200 is sent only once the event is committed. Unknown event types are stored too.',
        tags: TAGS,
        security: WEBHOOK_SECURITY,
        // Not validated here: WaVoIP's payloads vary, and normalizeWebhookPayload names the refused field.
        body: Type.Unknown({ description: "WaVoIP's event, as JSON" }),
        // Unvalidated: a token sent twice is a wrong token (401), as any other.
        querystring: Type.Object({ token: Type.Optional(Type.Unknown({ description: 'The webhook token (or the X-Webhook-Token header)' })) }),
        response: {
          200: Type.Object(
            { received: Type.Literal(true), event_id: Type.String({ description: 'The stored event' }) },
            { additionalProperties: false, description: 'Stored' },
          ),
          ...BODY_ERRORS,
          401: errorBody('No webhook token, a wrong one, or a revoked one'),
          429: errorBody('Too many wrong tokens from this address: locked out for the time Retry-After says'),
          ...SERVER_ERRORS,
        },
      },
      onRequest: async (request, reply) => {
        const header = request.headers['x-webhook-token'];
        const presented = typeof header === 'string' ? header : request.query.token;
        const isGroupToken = (candidate: unknown) => {
          const group = webhookTokens.match(candidate);
          if (group !== null) groups.set(request, group);
          return group !== null && group.revokedAt === null;
        };
        // No token needed; a device group's token still gives its events the group's label.
        if (webhookToken === null) return void isGroupToken(presented);
        // The single token first: the usual case costs what it did before device groups.
        const check = await secretGuards.webhook.check(request.ip, presented, (candidate) => secretsMatch(candidate, webhookToken) || isGroupToken(candidate));
        if (check.result === 'ok') return;
        const revoked = groups.get(request);
        refusals.set(
          request,
          check.result === 'locked-out'
            ? 'too many wrong tokens from this address'
            : presented === undefined
              ? 'no token'
              : revoked === undefined
                ? 'wrong token'
                : `revoked token of device group ${revoked.label}`,
        );
        return sendRefusal(reply, check, 'missing or wrong webhook token: add ?token=<WEBHOOK_TOKEN> to the URL');
      },
      // Bodies refused before the handler (not JSON, too large, too deep).
      onError: async (request, _reply, error) => {
        refusals.set(request, describeBodyRefusal(error));
      },
      onResponse: async (request, reply) => {
        const result = webhookResult(reply.statusCode);
        metrics.webhooks.inc({ type: eventTypes.get(request) ?? 'none', result });
        if (result === 'accepted') metrics.intakeDuration.observe(reply.elapsedTime / 1000);
        else if (result === 'unauthorized' || result === 'locked_out') metrics.authFailures.inc({ endpoint: 'webhook', result });
        if (reply.statusCode >= 400 && reply.statusCode < 500) {
          refusalLog.record({ reason: refusals.get(request) ?? `HTTP ${reply.statusCode}`, client: request.ip, status: reply.statusCode });
        }
      },
    },
    async (request, reply) => {
      const normalized = normalizeWebhookPayload(request.body);
      if (!normalized.ok) {
        refusals.set(request, normalized.error);
        return reply.code(400).send({ error: normalized.error, field: normalized.field });
      }

      const { event } = normalized;
      eventTypes.set(request, event.type);
      const eventId = randomUUID();
      const tenant = tenantOf(request);
      await eventWriter.append({
        eventId,
        receivedAt: clock.now(),
        type: event.type,
        callId: event.type === 'CALL' || event.type === 'RECORD' ? event.callId : null,
        // Set by the JSON parser for every body that got this far.
        payload: request.rawBody as string,
        tenant,
      });
      // The declared type is sender-controlled text: keep only what can name an event type.
      const label = event.type === 'UNKNOWN' ? event.declaredType?.replace(/[^\w-]/g, '').slice(0, 32) || 'UNKNOWN' : event.type;
      if (event.type !== 'DEVICE') {
        logger.info(
          { event_id: eventId, call_id: event.type === 'UNKNOWN' ? undefined : event.callId, tenant: tenant ?? undefined },
          `[WaVoIP Webhook] Received event: ${label}`,
        );
      } else {
        logger.debug({ event_id: eventId, device_id: event.deviceId }, '[WaVoIP Webhook] Received event: DEVICE');
      }
      reply.send({ received: true, event_id: eventId });
      events.wake();
      return reply;
    },
  );
}

/** Parser messages can quote the body (JSON.parse does): only what is wrong with it is logged. */
function describeBodyRefusal(error: { code?: string; statusCode?: number }): string {
  switch (error.code) {
    case 'INVALID_JSON':
      return 'body is not valid JSON';
    case 'EMPTY_BODY':
      return 'body is empty';
    case 'TOO_DEEP':
      return 'body is nested too deep';
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return 'body is too large';
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return 'content type is not application/json';
    default:
      return `HTTP ${error.statusCode ?? 400} (${error.code ?? 'unnamed error'})`;
  }
}

function webhookResult(statusCode: number): WebhookResult {
  if (statusCode < 300) return 'accepted';
  if (statusCode === 401) return 'unauthorized';
  if (statusCode === 429) return 'locked_out';
  return statusCode >= 500 ? 'unavailable' : 'invalid';
}
