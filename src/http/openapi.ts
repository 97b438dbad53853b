import fastifySwagger from '@fastify/swagger';
import { SESSION_COOKIE } from '../dashboard/dashboard-sessions.ts';
import type { App } from './schemas.ts';

export const OPENAPI_PATH = '/api/openapi.json';

/**
 * GET /api/openapi.json: the OpenAPI 3.1 document @fastify/swagger builds from every route's
 * schemas. Served without a token, as most APIs serve theirs: it describes the routes and holds
 * no data, and an integrator generates a client from it before being given a token. Every route
 * it describes still needs its credential.
 */
export function registerOpenApi(app: App): void {
  void app.register(fastifySwagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'wavoip-recordings',
        version: '1',
        description: 'Receives WaVoIP webhooks and makes WhatsApp call recordings arrive where a support team works. Every refusal answers `{ error, field? }`.',
      },
      components: {
        securitySchemes: {
          bearer: { type: 'http', scheme: 'bearer', description: 'API_TOKEN' },
          session: {
            type: 'apiKey',
            in: 'cookie',
            name: SESSION_COOKIE,
            description: 'A dashboard session (POST /api/session). Writes made with it also need its X-CSRF-Token header.',
          },
          webhookToken: { type: 'apiKey', in: 'query', name: 'token', description: 'WEBHOOK_TOKEN, or a device group\'s webhook token' },
          webhookTokenHeader: { type: 'apiKey', in: 'header', name: 'X-Webhook-Token', description: 'The same token, as a header' },
        },
      },
    },
  });
  app.get(OPENAPI_PATH, { schema: { hide: true } }, async () => app.swagger());
}
