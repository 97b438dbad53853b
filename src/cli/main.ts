import { existsSync } from 'node:fs';
import { Command, InvalidArgumentError } from 'commander';
import { ATTACHMENT_STATES } from '../calls/call-state.ts';
import { AppError, coerceError } from '../errors.ts';
import { listCallsCommand, migrateCommand, retryCommand, sendTestEventCommand, serveCommand } from './commands.ts';

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
  .command('send-test-event')
  .description("post the product document's test RECORD event to a running service, as the README's curl example does")
  .option('--url <url>', 'webhook URL (default: http://127.0.0.1:$PORT/webhooks/wavoip, with ?token=$WEBHOOK_TOKEN when set)')
  .option('--call-id <id>', 'whatsapp_call_id to send', 'test123')
  .option('--status <status>', 'record_status to send', 'READY')
  .action(sendTestEventCommand);

program
  .command('calls')
  .description('list calls and their recording attachment, newest first (uses the read API of a running service)')
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
  .description('fetch the recording of a failed call again')
  .argument('<call-id>', 'the whatsapp_call_id of the call')
  .option('--url <url>', 'service base URL (default: http://127.0.0.1:$PORT)')
  .action(retryCommand);

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
