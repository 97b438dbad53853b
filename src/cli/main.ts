import { existsSync } from 'node:fs';
import { Command, InvalidArgumentError } from 'commander';
import { ATTACHMENT_STATES } from '../calls/call-state.ts';
import { AppError, coerceError } from '../errors.ts';
import { backupCommand } from './backup-command.ts';
import { listCallsCommand, retryCommand } from './call-commands.ts';
import { redeliverCommand } from './delivery-commands.ts';
import { migrateCommand, serveCommand } from './serve-commands.ts';
import { sendTestEventCommand, webhookUrlCommand } from './webhook-commands.ts';

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
  .description('list calls with their recording attachment, attempts, next attempt and last error, newest first (uses the API of a running service)')
  .option('--state <state>', `only calls whose attachment is ${ATTACHMENT_STATES.join(', ')}`, (value: string) => {
    if (!(ATTACHMENT_STATES as readonly string[]).includes(value)) throw new InvalidArgumentError(`must be one of ${ATTACHMENT_STATES.join(', ')}`);
    return value;
  })
  .option('--limit <n>', 'how many calls (1-200)', parseLimit, 50)
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

function parseLimit(value: string): number {
  const limit = Number(value);
  if (!Number.isInteger(limit) || limit < 1 || limit > 200) throw new InvalidArgumentError('must be a whole number from 1 to 200');
  return limit;
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
