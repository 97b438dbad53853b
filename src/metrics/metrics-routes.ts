import { checkApiToken } from '../api/api-auth.ts';
import type { AppDeps } from '../http/app-deps.ts';
import { AUTH_ERRORS, mediaBody, SERVER_ERRORS, type App } from '../http/schemas.ts';

/** Prometheus scrape endpoint; behind the API token like the rest of what the service knows. */
export function registerMetricsRoutes(app: App, deps: AppDeps): void {
  app.get(
    '/metrics',
    {
      onRequest: (request, reply) => checkApiToken(deps, request, reply),
      schema: {
        summary: 'Prometheus metrics (the bearer token only: no session)',
        tags: ['health'],
        security: [{ bearer: [] }],
        response: { 200: mediaBody('The metrics, in the Prometheus text format', 'text/plain'), ...AUTH_ERRORS, ...SERVER_ERRORS },
      },
    },
    async (_request, reply) => {
      const body = await deps.metrics.registry.metrics();
      return reply.type(deps.metrics.registry.contentType).send(body);
    },
  );
}
