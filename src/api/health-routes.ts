import { Type, type Static } from 'typebox';
import { checkDb } from '../db/database.ts';
import { listDestinationStates } from '../db/destination-states-repository.ts';
import { coerceError } from '../errors.ts';
import type { AppDeps } from '../http/app-deps.ts';
import { errorBody, SERVER_ERRORS, stringEnum, type App } from '../http/schemas.ts';

const PROBE_RESULTS = ['ok', 'unavailable'] as const;
export const ReadinessSchema = Type.Object(
  {
    status: stringEnum(['ready', 'degraded', 'unavailable']),
    database: stringEnum(PROBE_RESULTS),
    storage: stringEnum(PROBE_RESULTS),
    deliveries: Type.Optional(stringEnum(['ok', 'blocked', 'unknown'], { description: 'Absent when no delivery destination is configured' })),
  },
  { additionalProperties: false },
);
const TAGS = ['health'];

export type Readiness = Static<typeof ReadinessSchema>;

/**
 * Unauthenticated, for load balancers and process supervisors; they reveal no call data.
 * /readyz: 200 `ready`, 200 `degraded` (recording storage failing, or a delivery destination
 * blocked; webhooks still taken), or
 * 503 `unavailable` (the database failing: webhooks cannot be stored).
 */
export function registerHealthRoutes(app: App, deps: AppDeps): void {
  app.get(
    '/healthz',
    {
      schema: {
        summary: 'The process is up',
        tags: TAGS,
        response: { 200: Type.Object({ status: stringEnum(['ok']) }, { additionalProperties: false, description: 'Up' }), ...SERVER_ERRORS },
      },
    },
    async () => ({ status: 'ok' as const }),
  );

  app.get(
    '/readyz',
    {
      schema: {
        summary: 'Whether webhooks can be taken: the database, the recording storage, the destinations',
        tags: TAGS,
        response: {
          200: Type.Object(ReadinessSchema.properties, { additionalProperties: false, description: 'ready, or degraded (webhooks still taken)' }),
          // Also `{ error }`: a request arriving while the service shuts down is answered 503 before
          // this route runs (src/http/app.ts). Declared readiness only, that answer would fail to
          // serialise and go out as a 500, on the very route load balancers poll while a replica drains.
          503: Type.Union(
            [
              Type.Object(ReadinessSchema.properties, { additionalProperties: false }),
              errorBody('The service is shutting down'),
            ],
            { description: 'unavailable: the database is failing; or `{ error }` while the service shuts down' },
          ),
          ...SERVER_ERRORS,
        },
      },
    },
    async (_request, reply) => {
      const readiness = await checkReadiness(deps);
      return reply.code(readiness.status === 'unavailable' ? 503 : 200).send(readiness);
    },
  );
}

/** What /readyz answers, and the dashboard's health strip shows. */
export async function checkReadiness(deps: Pick<AppDeps, 'db' | 'store' | 'deliveries' | 'logger'>): Promise<Readiness> {
  const [database, storage, deliveries] = await Promise.all([
    probe('database', () => checkDb(deps.db)),
    probe('recording storage', () => deps.store.check()),
    deliveryState(),
  ]);
  // Webhooks need only the database. A replica whose storage fails still takes them (and its
  // downloads retry), so a load balancer must not route them away: that would lose them.
  // A blocked destination is the same: deliveries wait, nothing is lost.
  const status = database !== 'ok' ? 'unavailable' : storage !== 'ok' || deliveries === 'blocked' ? 'degraded' : 'ready';
  return { status, database, storage, ...(deliveries === 'none' ? {} : { deliveries }) };

  /**
   * `blocked` while a configured destination's settings are wrong or its receiver disabled it;
   * which one and why is in the log and GET /api/destinations, behind the API token.
   */
  async function deliveryState(): Promise<'ok' | 'blocked' | 'none' | 'unknown'> {
    const names = deps.deliveries.outbox.destinations.map((destination) => destination.name);
    if (names.length === 0) return 'none';
    try {
      const states = await listDestinationStates(deps.db);
      return names.some((name) => states.has(name)) ? 'blocked' : 'ok';
    } catch {
      // The database's own probe says why.
      return 'unknown';
    }
  }

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
