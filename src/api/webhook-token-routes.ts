import type { FastifyInstance } from 'fastify';
import type { StoredWebhookToken } from '../db/webhook-tokens-repository.ts';
import type { AppDeps } from '../http/app-deps.ts';
import { WEBHOOK_PATH } from '../webhook/webhook-routes.ts';
import { TENANT_LABEL_PATTERN, TENANT_LABEL_RULE } from '../webhook/webhook-tokens.ts';
import { checkApiAccess } from './api-auth.ts';

/** The `tenant` filter of the call and device lists: a label as webhook tokens have them. */
export const TENANT_QUERY_SCHEMA = { type: 'string', pattern: TENANT_LABEL_PATTERN.source } as const;

const isoTime = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

function presentToken(token: StoredWebhookToken) {
  return { id: token.id, label: token.label, created_at: isoTime(token.createdAt), revoked_at: isoTime(token.revokedAt) };
}

/** Webhook tokens of device groups: created (the token shown this once), listed, revoked. */
export function registerWebhookTokenRoutes(app: FastifyInstance, deps: AppDeps): void {
  void app.register(
    async (api) => {
      api.addHook('onRequest', (request, reply) => checkApiAccess(deps, request, reply));

      api.post<{ Body: { label: string } }>(
        '/webhook-tokens',
        {
          schema: {
            body: { type: 'object', properties: { label: { type: 'string' } }, required: ['label'], additionalProperties: false },
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

      api.get('/webhook-tokens', async () => ({ webhook_tokens: (await deps.webhookTokens.list()).map(presentToken) }));

      api.delete<{ Params: { id: string } }>('/webhook-tokens/:id', async (request, reply) => {
        const revoked = await deps.webhookTokens.revoke(request.params.id);
        if (revoked === null) return reply.code(404).send({ error: `no webhook token with id ${JSON.stringify(request.params.id)}` });
        deps.logger.info({ webhook_token_id: revoked.id, tenant: revoked.label }, `[WaVoIP Webhook] Webhook token ${revoked.id} of device group ${revoked.label} revoked`);
        return presentToken(revoked);
      });
    },
    { prefix: '/api' },
  );
}
