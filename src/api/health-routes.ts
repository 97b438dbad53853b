import type { FastifyInstance } from 'fastify';
import { checkDb } from '../db/database.ts';
import { coerceError } from '../errors.ts';
import type { AppDeps } from '../http/app-deps.ts';

/** Unauthenticated, for load balancers and process supervisors. */
export function registerHealthRoutes(app: FastifyInstance, deps: AppDeps): void {
  app.get('/healthz', async () => ({ status: 'ok' }));

  app.get('/readyz', async (_request, reply) => {
    try {
      await checkDb(deps.db);
      return { status: 'ready', database: 'ok' };
    } catch (caught) {
      deps.logger.warn({ err: coerceError(caught) }, 'Readiness check failed: database unreachable');
      return reply.code(503).send({ status: 'unavailable', database: 'unreachable' });
    }
  });
}
