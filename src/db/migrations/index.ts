import type { Migration } from 'kysely';
import * as initial from './001-initial.ts';
import * as recordingRetention from './002-recording-retention.ts';
import * as fetchPriority from './003-fetch-priority.ts';
import * as callDetails from './004-call-details.ts';
import * as devicesAndTenants from './005-devices-and-tenants.ts';
import * as deliveries from './006-deliveries.ts';
import * as dashboard from './007-dashboard.ts';

/** Every migration, in order. Listed in code so that nothing depends on scanning a directory at run time. */
export const migrations: Record<string, Migration> = {
  '001-initial': initial,
  '002-recording-retention': recordingRetention,
  '003-fetch-priority': fetchPriority,
  '004-call-details': callDetails,
  '005-devices-and-tenants': devicesAndTenants,
  '006-deliveries': deliveries,
  '007-dashboard': dashboard,
};
