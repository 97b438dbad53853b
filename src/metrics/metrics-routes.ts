import type { FastifyInstance } from 'fastify';
import { checkApiToken } from '../api/api-auth.ts';
import type { AppDeps } from '../http/app-deps.ts';

/** Prometheus scrape endpoint; behind the API token like the rest of what the service knows. */
export function registerMetricsRoutes(app: FastifyInstance, deps: AppDeps): void {
  app.get('/metrics', { onRequest: (request, reply) => checkApiToken(deps, request, reply) }, async (_request, reply) => {
    const body = await deps.metrics.registry.metrics();
    return reply.type(deps.metrics.registry.contentType).send(body);
  });
}
