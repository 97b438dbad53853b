import type { FastifyInstance } from 'fastify';
import { checkDb } from '../db/database.ts';
import { coerceError } from '../errors.ts';
import type { AppDeps } from '../http/app-deps.ts';

/** Unauthenticated, for load balancers and process supervisors; they reveal no call data. */
export function registerHealthRoutes(app: FastifyInstance, deps: AppDeps): void {
  app.get('/healthz', async () => ({ status: 'ok' }));

  app.get('/readyz', async (_request, reply) => {
    const [database, storage] = await Promise.all([
      probe('database', () => checkDb(deps.db)),
      probe('recording storage', () => deps.store.check()),
    ]);
    const ready = database === 'ok' && storage === 'ok';
    return reply.code(ready ? 200 : 503).send({ status: ready ? 'ready' : 'unavailable', database, storage });
  });

  /** The details go to the log, not to the unauthenticated caller. */
  async function probe(what: string, check: () => Promise<void>): Promise<'ok' | 'unavailable'> {
    try {
      await check();
      return 'ok';
    } catch (caught) {
      const error = coerceError(caught);
      deps.logger.warn({ err: error }, `Readiness check failed: ${what}: ${error.message}`);
      return 'unavailable';
    }
  }
}
