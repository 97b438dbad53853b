import { loadConfig, localServiceUrl } from '../config/config.ts';
import { AppError } from '../errors.ts';
import { redactUrl } from '../log/logger.ts';
import { fetchOrExplain, webhookTokenOf, webhookUrl } from './service-client.ts';

/** Posts a RECORD event to a running service, as the README's test curl does. */
export async function sendTestEventCommand(options: { url?: string; callId: string; status: string }): Promise<void> {
  const config = loadConfig();
  const url = options.url ?? webhookUrl(localServiceUrl(config.host, config.port), await webhookTokenOf(config));
  const body = { type: 'RECORD', whatsapp_call_id: options.callId, record_status: options.status };
  const response = await fetchOrExplain(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const text = await response.text();
  process.stdout.write(`POST ${redactUrl(url)} ${JSON.stringify(body)}\n→ ${response.status} ${text}\n`);
  if (!response.ok) throw new AppError(`the service answered ${response.status}`, { code: 'REQUEST_REFUSED' });
}

/** Prints the URL to paste into the WaVoIP panel, token included: stdout holds the URL alone. */
export async function webhookUrlCommand(options: { publicUrl?: string }): Promise<void> {
  const config = loadConfig({ ...process.env, ...(options.publicUrl === undefined ? {} : { PUBLIC_URL: options.publicUrl }) });
  if (config.publicUrl === undefined) {
    throw new AppError(
      'the address WaVoIP reaches this service at is not known: set PUBLIC_URL=https://your-host, or pass --public-url https://your-host',
      { code: 'NO_PUBLIC_URL' },
    );
  }
  const token = await webhookTokenOf(config);
  if (token === null) process.stderr.write('WEBHOOK_TOKEN is none: this URL carries no token, and anyone who finds it can post events.\n');
  process.stdout.write(`${webhookUrl(config.publicUrl, token)}\n`);
}
