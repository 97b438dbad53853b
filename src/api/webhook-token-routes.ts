import { Type } from 'typebox';
import type { StoredWebhookToken } from '../db/webhook-tokens-repository.ts';
import type { AppDeps } from '../http/app-deps.ts';
import { API_SECURITY, AUTH_ERRORS, BODY_ERRORS, CSRF_ERROR, errorBody, IsoTime, nullable, SERVER_ERRORS, toIsoTime, type App } from '../http/schemas.ts';
import { WEBHOOK_PATH } from '../webhook/webhook-routes.ts';
import { TENANT_LABEL_PATTERN, TENANT_LABEL_RULE } from '../webhook/webhook-tokens.ts';
import { checkApiAccess } from './api-auth.ts';

/** The `tenant` filter of the call and device lists: a label as webhook tokens have them. */
export const TENANT_QUERY_SCHEMA = Type.String({ pattern: TENANT_LABEL_PATTERN.source, description: 'A device group label' });

const WebhookTokenSchema = Type.Object(
  { id: Type.String(), label: Type.String(), created_at: IsoTime, revoked_at: IsoTime },
  { additionalProperties: false },
);
const CreatedWebhookTokenSchema = Type.Object(
  {
    ...WebhookTokenSchema.properties,
    token: Type.String({ description: 'Shown this once: only its hash is kept' }),
    webhook_url: nullable(Type.String({ description: 'The URL to give WaVoIP, when PUBLIC_URL is set' })),
  },
  { additionalProperties: false, description: 'Created' },
);
const TAGS = ['webhook tokens'];

function presentToken(token: StoredWebhookToken) {
  return { id: token.id, label: token.label, created_at: toIsoTime(token.createdAt), revoked_at: toIsoTime(token.revokedAt) };
}

/** Webhook tokens of device groups: created (the token shown this once), listed, revoked. */
export function registerWebhookTokenRoutes(app: App, deps: AppDeps): void {
  void app.register(
    async (api: App) => {
      api.addHook('onRequest', (request, reply) => checkApiAccess(deps, request, reply));

      api.post(
        '/webhook-tokens',
        {
          schema: {
            summary: "Create a device group's webhook token",
            tags: TAGS,
            security: API_SECURITY,
            body: Type.Object({ label: Type.String({ description: 'The device group, given to its calls as `tenant`' }) }, { additionalProperties: false }),
            response: { 201: CreatedWebhookTokenSchema, ...BODY_ERRORS, ...AUTH_ERRORS, ...CSRF_ERROR, ...SERVER_ERRORS },
          },
        },
        async (request, reply) => {
          const { label } = request.body;
          if (!TENANT_LABEL_PATTERN.test(label)) return reply.code(400).send({ error: `label must be ${TENANT_LABEL_RULE}`, field: 'label' });
          const { stored, token } = await deps.webhookTokens.create(label);
          deps.logger.info({ webhook_token_id: stored.id, tenant: label }, `[WaVoIP Webhook] Webhook token ${stored.id} created for device group ${label}`);
          const publicUrl = deps.config.publicUrl;
          return reply.code(201).send({
            ...presentToken(stored),
            token,
            webhook_url: publicUrl === undefined ? null : `${publicUrl}${WEBHOOK_PATH}?token=${encodeURIComponent(token)}`,
          });
        },
      );

      api.get(
        '/webhook-tokens',
        {
          schema: {
            summary: 'List webhook tokens, revoked ones too',
            tags: TAGS,
            security: API_SECURITY,
            response: {
              200: Type.Object({ webhook_tokens: Type.Array(WebhookTokenSchema) }, { additionalProperties: false, description: 'Every token, oldest first' }),
              ...AUTH_ERRORS,
              ...SERVER_ERRORS,
            },
          },
        },
        async () => ({ webhook_tokens: (await deps.webhookTokens.list()).map(presentToken) }),
      );

      api.delete(
        '/webhook-tokens/:id',
        {
          schema: {
            summary: 'Revoke a webhook token',
            tags: TAGS,
            security: API_SECURITY,
            params: Type.Object({ id: Type.String() }),
            response: {
              200: Type.Object(WebhookTokenSchema.properties, { additionalProperties: false, description: 'The token, revoked' }),
              404: errorBody('No webhook token with this id'),
              ...BODY_ERRORS,
              ...AUTH_ERRORS,
              ...CSRF_ERROR,
              ...SERVER_ERRORS,
            },
          },
        },
        async (request, reply) => {
          const revoked = await deps.webhookTokens.revoke(request.params.id);
          if (revoked === null) return reply.code(404).send({ error: `no webhook token with id ${JSON.stringify(request.params.id)}` });
          deps.logger.info({ webhook_token_id: revoked.id, tenant: revoked.label }, `[WaVoIP Webhook] Webhook token ${revoked.id} of device group ${revoked.label} revoked`);
          return presentToken(revoked);
        },
      );
    },
    { prefix: '/api' },
  );
}
