import type { FastifyInstance } from 'fastify';
import { checkDb } from '../db/database.ts';
import { coerceError } from '../errors.ts';
import type { AppDeps } from '../http/app-deps.ts';

/**
 * Unauthenticated, for load balancers and process supervisors; they reveal no call data.
 * /readyz: 200 `ready`, 200 `degraded` (recording storage failing, webhooks still taken), or
 * 503 `unavailable` (the database failing: webhooks cannot be stored).
 */
export function registerHealthRoutes(app: FastifyInstance, deps: AppDeps): void {
  app.get('/healthz', async () => ({ status: 'ok' }));

  app.get('/readyz', async (_request, reply) => {
    const [database, storage] = await Promise.all([
      probe('database', () => checkDb(deps.db)),
      probe('recording storage', () => deps.store.check()),
    ]);
    // Webhooks need only the database. A replica whose storage fails still takes them (and its
    // downloads retry), so a load balancer must not route them away: that would lose them.
    const status = database !== 'ok' ? 'unavailable' : storage !== 'ok' ? 'degraded' : 'ready';
    return reply.code(status === 'unavailable' ? 503 : 200).send({ status, database, storage });
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
