import { loadConfig } from '../config/config.ts';
import { callApi } from './service-client.ts';
import { formatTable } from './table.ts';

interface ApiDevice {
  id_session: string;
  phone: string | null;
  phone_raw: string | null;
  status: string;
  status_raw: string | null;
  status_changed_at: string | null;
  last_webhook_at: string;
  calls_last_24h: number;
  silent: boolean;
  tenant: string | null;
}

export async function listDevicesCommand(options: { tenant?: string; status?: string; silent?: boolean; limit: number; json?: boolean; url?: string }): Promise<void> {
  const query = new URLSearchParams({ limit: String(options.limit) });
  if (options.tenant !== undefined) query.set('tenant', options.tenant);
  if (options.status !== undefined) query.set('status', options.status);
  if (options.silent) query.set('silent', 'true');
  const page = (await callApi(loadConfig(), options.url, `/api/devices?${query}`)) as { devices: ApiDevice[]; next_cursor: string | null };
  if (options.json) {
    process.stdout.write(`${JSON.stringify(page, null, 2)}\n`);
    return;
  }
  if (page.devices.length === 0) {
    process.stdout.write(query.size > 1 ? 'No devices match.\n' : 'No devices yet: a device appears with its first webhook.\n');
    return;
  }
  const rows = page.devices.map((device) => [
    device.id_session,
    device.phone ?? device.phone_raw ?? '',
    device.status_raw === null || device.status_raw.toLowerCase() === device.status ? device.status : `${device.status} (${device.status_raw})`,
    device.status_changed_at ?? '',
    device.last_webhook_at,
    String(device.calls_last_24h),
    device.silent ? 'SILENT' : '',
    device.tenant ?? '',
  ]);
  process.stdout.write(formatTable(['ID SESSION', 'PHONE', 'STATUS', 'STATUS SINCE', 'LAST WEBHOOK', 'CALLS 24H', 'SILENT', 'TENANT'], rows));
  if (page.next_cursor !== null) process.stdout.write(`More devices than --limit ${options.limit}: narrow with --tenant, --status or --silent, or use the API's cursor.\n`);
}
