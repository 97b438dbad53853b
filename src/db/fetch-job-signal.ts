import { createDatabaseSignal, type DatabaseSignal, type DatabaseSignalOptions } from './database-signal.ts';

/**
 * Tells every replica sharing a PostgreSQL database that fetch work is due now, so an idle
 * replica starts it at once rather than at its next scan. A lost notification only delays the
 * job until a replica's next scan.
 */
type FetchJobSignal = DatabaseSignal;

export function createFetchJobSignal(deps: Pick<DatabaseSignalOptions, 'db' | 'database' | 'logger' | 'onAnnounced'>): FetchJobSignal {
  return createDatabaseSignal({
    ...deps,
    channel: 'wavoip_recordings_fetch_jobs',
    messages: {
      regained: '[WaVoIP Jobs] Listening for new fetch jobs again',
      lost: '[WaVoIP Jobs] Lost the database notification channel; listening again in {delay} (jobs are still found by the regular scan)',
    },
  });
}
