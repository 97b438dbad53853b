import { existsSync } from 'node:fs';
import { Command, InvalidArgumentError } from 'commander';
import { CALL_DIRECTIONS, CALL_OUTCOMES } from '../calls/call-details.ts';
import { ATTACHMENT_STATES } from '../calls/call-state.ts';
import { DEVICE_STATUSES } from '../devices/device-status.ts';
import { AppError, coerceError } from '../errors.ts';
import { TENANT_LABEL_PATTERN, TENANT_LABEL_RULE } from '../webhook/webhook-tokens.ts';
import { backupCommand } from './backup-command.ts';
import { listCallsCommand, retryCommand } from './call-commands.ts';
import { listDevicesCommand } from './device-commands.ts';
import { redeliverCommand } from './delivery-commands.ts';
import { migrateCommand, serveCommand } from './serve-commands.ts';
import { sendTestEventCommand, webhookUrlCommand } from './webhook-commands.ts';
import { createWebhookTokenCommand, listWebhookTokensCommand, revokeWebhookTokenCommand } from './webhook-token-commands.ts';

const program = new Command()
  .name('wavoip-recordings')
  .description('Receives WaVoIP webhooks and downloads, stores and attaches call recordings.')
  .showHelpAfterError();

program
  .command('serve')
  .description('run the service (what `npm start` runs); configured by environment variables, see the README')
  .action(serveCommand);

program
  .command('migrate')
  .description('apply pending database migrations and exit (for MIGRATE_ON_START=false deployments); exits non-zero on failure')
  .action(migrateCommand);

program
  .command('webhook-url')
  .description('print the URL to paste into the WaVoIP panel (Integrations > Webhook), webhook token included')
  .option('--public-url <url>', 'the address WaVoIP reaches this service at (default: PUBLIC_URL)')
  .action(webhookUrlCommand);

program
  .command('send-test-event')
  .description('post a test RECORD event to a running service, as the README\'s test curl does')
  .option('--url <url>', 'webhook URL (default: http://127.0.0.1:$PORT/webhooks/wavoip, with the webhook token)')
  .option('--call-id <id>', 'whatsapp_call_id to send', 'test123')
  .option('--status <status>', 'record_status to send', 'READY')
  .action(sendTestEventCommand);

program
  .command('calls')
  .description('list calls newest first: direction, the other party, outcome, and the recording attachment with its attempts, next attempt and last error (uses the API of a running service)')
  .option('--state <state>', `only calls whose attachment is ${ATTACHMENT_STATES.join(', ')}`, (value: string) => {
    if (!(ATTACHMENT_STATES as readonly string[]).includes(value)) throw new InvalidArgumentError(`must be one of ${ATTACHMENT_STATES.join(', ')}`);
    return value;
  })
  .option('--direction <direction>', `only ${CALL_DIRECTIONS.join(' or ')} calls`, oneOf(CALL_DIRECTIONS))
  .option('--outcome <outcome>', `only calls ${CALL_OUTCOMES.join(', ')}`, oneOf(CALL_OUTCOMES))
  .option('--device <id_session>', 'only calls of this device')
  .option('--phone <number>', 'only calls with this number, the other party\'s or ours (digits or E.164)')
  .option('--since <time>', 'only calls first seen at or after this ISO 8601 date or time (2024-05-01, 2024-05-01T12:00:00Z)')
  .option('--until <time>', 'only calls first seen before this ISO 8601 date or time')
  .option('--limit <n>', 'how many calls (1-200)', limitUpTo(200), 50)
  .option('--json', 'print the API response as JSON')
  .option('--url <url>', 'service base URL (default: http://127.0.0.1:$PORT)')
  .action(listCallsCommand);

program
  .command('retry')
  .description("fetch a call's recording now: a failed call is tried again for another full wait, a pending one's next attempt is brought forward")
  .argument('[call-id]', 'the whatsapp_call_id of the call')
  .option('--all-pending', 'bring the next attempt of every pending call forward to now')
  .option('--all-failed', 'try every failed call again')
  .option('--url <url>', 'service base URL (default: http://127.0.0.1:$PORT)')
  .action(retryCommand);

program
  .command('devices')
  .description('list devices (id_session) with status, when it changed, last webhook, calls in the last 24 h and whether they are silent (uses the API of a running service)')
  .option('--tenant <label>', 'only devices of this device group', parseLabel)
  .option('--status <status>', `only devices whose status is ${DEVICE_STATUSES.join(', ')}`, (value: string) => {
    if (!(DEVICE_STATUSES as readonly string[]).includes(value)) throw new InvalidArgumentError(`must be one of ${DEVICE_STATUSES.join(', ')}`);
    return value;
  })
  .option('--silent', 'only devices that have sent no webhook for WEBHOOK_SILENCE_WARNING')
  .option('--limit <n>', 'how many devices (1-500)', limitUpTo(500), 100)
  .option('--json', 'print the API response as JSON')
  .option('--url <url>', 'service base URL (default: http://127.0.0.1:$PORT)')
  .action(listDevicesCommand);

const webhookTokens = program
  .command('webhook-tokens')
  .description("a webhook token per device group (tenant): its devices' calls and devices are labelled with the group, and it can be revoked alone");
webhookTokens
  .command('create')
  .description('create a token for a device group; it is printed once, with the panel URL when PUBLIC_URL is set')
  .argument('<label>', `the group's label (${TENANT_LABEL_RULE})`, parseLabel)
  .option('--url <url>', 'service base URL (default: http://127.0.0.1:$PORT)')
  .action(createWebhookTokenCommand);
webhookTokens
  .command('list')
  .description('list the tokens (never their values), revoked ones too')
  .option('--json', 'print the API response as JSON')
  .option('--url <url>', 'service base URL (default: http://127.0.0.1:$PORT)')
  .action(listWebhookTokensCommand);
webhookTokens
  .command('revoke')
  .description('revoke a token: webhooks that present it are refused with 401 from then on')
  .argument('<id>', 'the id that create and list show')
  .option('--url <url>', 'service base URL (default: http://127.0.0.1:$PORT)')
  .action(revokeWebhookTokenCommand);

program
  .command('redeliver')
  .description('send a call to its destinations (Chatwoot, outbound webhooks) again, or with --since fill in the deliveries of calls from before a destination was configured')
  .argument('[call-id]', 'the whatsapp_call_id of the call')
  .option('--since <date>', 'every call first seen since this date (2024-05-01 or 2024-05-01T12:00:00Z) gets the deliveries it is missing')
  .option('--destination <name>', 'only this destination (as GET /api/destinations names it)')
  .option('--url <url>', 'service base URL (default: http://127.0.0.1:$PORT)')
  .action(redeliverCommand);

program
  .command('backup')
  .description('copy the embedded SQLite database to <file> while the service runs (a consistent online copy)')
  .argument('<file>', 'where to write the copy; an existing file is never overwritten')
  .action(backupCommand);

function oneOf(allowed: readonly string[]) {
  return (value: string): string => {
    if (!allowed.includes(value)) throw new InvalidArgumentError(`must be one of ${allowed.join(', ')}`);
    return value;
  };
}

/** A parser of --limit: commander passes the default as a second argument, so the bound is fixed here. */
function limitUpTo(max: number): (value: string) => number {
  return (value) => {
    const limit = Number(value);
    if (!Number.isInteger(limit) || limit < 1 || limit > max) throw new InvalidArgumentError(`must be a whole number from 1 to ${max}`);
    return limit;
  };
}

function parseLabel(value: string): string {
  if (!TENANT_LABEL_PATTERN.test(value)) throw new InvalidArgumentError(`must be ${TENANT_LABEL_RULE}`);
  return value;
}

try {
  // Settings may also live in a .env file in the working directory; real environment variables win.
  if (existsSync('.env')) process.loadEnvFile('.env');
  await program.parseAsync(process.argv);
} catch (caught) {
  const error = coerceError(caught);
  // Expected failures (bad configuration, a refused request) get one clear line, not a stack trace.
  process.stderr.write(`wavoip-recordings: ${error instanceof AppError ? error.message : (error.stack ?? error.message)}\n`);
  process.exitCode = 1;
}
