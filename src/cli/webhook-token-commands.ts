import { loadConfig } from '../config/config.ts';
import { callApi, webhookUrl } from './service-client.ts';
import { formatTable } from './table.ts';

interface ApiWebhookToken {
  id: string;
  label: string;
  created_at: string;
  revoked_at: string | null;
}

/** Prints the new token (shown this once) and, when the public address is known, the panel URL with it. */
export async function createWebhookTokenCommand(label: string, options: { url?: string }): Promise<void> {
  const config = loadConfig();
  const created = (await callApi(config, options.url, '/api/webhook-tokens', 'POST', { label })) as ApiWebhookToken & { token: string; webhook_url: string | null };
  const panelUrl = config.publicUrl === undefined ? created.webhook_url : webhookUrl(config.publicUrl, created.token);
  process.stdout.write(
    `Webhook token ${created.id} for device group ${created.label}; it is shown only now, keep it:\n${created.token}\n` +
      (panelUrl === null
        ? 'Set PUBLIC_URL (or run `wavoip-recordings webhook-url`) for the URL; the panel takes it as ?token=<this token>.\n'
        : `WaVoIP panel webhook URL for this group's devices:\n${panelUrl}\n`),
  );
}

export async function listWebhookTokensCommand(options: { json?: boolean; url?: string }): Promise<void> {
  const answer = (await callApi(loadConfig(), options.url, '/api/webhook-tokens')) as { webhook_tokens: ApiWebhookToken[] };
  if (options.json) {
    process.stdout.write(`${JSON.stringify(answer, null, 2)}\n`);
    return;
  }
  if (answer.webhook_tokens.length === 0) {
    process.stdout.write('No webhook tokens for device groups: every webhook uses WEBHOOK_TOKEN. Create one with `wavoip-recordings webhook-tokens create <label>`.\n');
    return;
  }
  const rows = answer.webhook_tokens.map((token) => [token.id, token.label, token.created_at, token.revoked_at ?? '']);
  process.stdout.write(formatTable(['ID', 'LABEL', 'CREATED', 'REVOKED'], rows));
}

export async function revokeWebhookTokenCommand(id: string, options: { url?: string }): Promise<void> {
  const revoked = (await callApi(loadConfig(), options.url, `/api/webhook-tokens/${encodeURIComponent(id)}`, 'DELETE')) as ApiWebhookToken;
  process.stdout.write(`Webhook token ${revoked.id} of device group ${revoked.label} revoked at ${revoked.revoked_at}: webhooks with it are refused (401).\n`);
}
