import { loadConfig } from '../config/config.ts';
import { createDb, migrateToLatest } from '../db/database.ts';
import { AppError, coerceError } from '../errors.ts';
import { createLogger } from '../log/logger.ts';
import { startService, type Service } from '../service.ts';

/**
 * Added to SHUTDOWN_GRACE (after which connections still open are closed) for aborting
 * downloads and closing the database. Reached only if something hangs past that; then the
 * process exits 1 without a clean close.
 */
const SHUTDOWN_MARGIN_MS = 5_000;

/** Applies pending migrations and exits: for deployments that set MIGRATE_ON_START=false. */
export async function migrateCommand(): Promise<void> {
  const config = loadConfig();
  const db = createDb(config.database);
  try {
    const applied = await migrateToLatest(db);
    const where = config.database.dialect === 'sqlite' ? config.database.filename : config.database.redactedUrl;
    process.stdout.write(applied.length === 0 ? `${where}: already up to date\n` : `${where}: applied ${applied.join(', ')}\n`);
  } finally {
    await db.destroy();
  }
}

export async function serveCommand(): Promise<void> {
  const config = loadConfig();
  const shutdownDeadlineMs = config.shutdownGraceMs + SHUTDOWN_MARGIN_MS;
  const logger = createLogger(config);
  let service: Service | undefined;
  let stopSignal: NodeJS.Signals | undefined;

  let shuttingDown = false;
  const shutDown = (signal: NodeJS.Signals) => {
    if (shuttingDown) {
      logger.warn(`Received ${signal} again: already shutting down (exits within ${shutdownDeadlineMs / 1000}s of the first signal)`);
      return;
    }
    shuttingDown = true;
    logger.info(`Received ${signal}: finishing requests in flight and stopping`);
    const forced = setTimeout(() => {
      logger.error(`Shutdown did not finish within ${shutdownDeadlineMs / 1000}s; exiting without closing the database cleanly`);
      process.exit(1);
    }, shutdownDeadlineMs).unref();
    (service as Service)
      .stop()
      .then(() => {
        clearTimeout(forced);
        logger.info('Stopped');
        process.exit(0);
      })
      .catch((caught: unknown) => {
        logger.error({ err: coerceError(caught) }, 'Shutdown failed');
        process.exit(1);
      });
  };
  // Installed before start-up, so that a signal during it still ends in a clean stop. Kept
  // installed: a second signal must not kill the process halfway through closing the database.
  const onSignal = (signal: NodeJS.Signals) => (service ? shutDown(signal) : (stopSignal ??= signal));
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  try {
    service = await startService(config, logger);
  } catch (caught) {
    if ((caught as NodeJS.ErrnoException).code === 'EADDRINUSE') {
      throw new AppError(`port ${config.port} on ${config.host} is already in use: stop the other process or set PORT`, {
        code: 'PORT_IN_USE',
        cause: caught,
      });
    }
    throw caught;
  }
  if (stopSignal) shutDown(stopSignal);
}
