import { loadConfig } from '../config/config.ts';
import { AppError } from '../errors.ts';
import { callApi } from './service-client.ts';

interface ApiCall {
  whatsapp_call_id: string;
  direction: string | null;
  outcome: string;
  peer_phone: string | null;
  peer_phone_raw: string | null;
  peer_name: string | null;
  record_status: string | null;
  first_seen_at: string | null;
  attachment: { state: string; reason: string | null; attempts?: number; next_attempt_at?: string; last_error?: string | null };
}

/** The `calls` options passed to the API as they are: it checks them and names a bad one. */
const FILTERS = ['state', 'direction', 'outcome', 'device', 'phone', 'since', 'until'] as const;
type CallFilterOptions = Partial<Record<(typeof FILTERS)[number], string>>;

export async function listCallsCommand(options: CallFilterOptions & { limit: number; json?: boolean; url?: string }): Promise<void> {
  const query = new URLSearchParams({ limit: String(options.limit) });
  for (const filter of FILTERS) {
    const value = options[filter];
    if (value !== undefined) query.set(filter, value);
  }
  const page = (await callApi(loadConfig(), options.url, `/api/calls?${query}`)) as { calls: ApiCall[]; next_cursor: string | null };
  if (options.json) {
    process.stdout.write(`${JSON.stringify(page, null, 2)}\n`);
    return;
  }
  if (page.calls.length === 0) {
    const filtered = FILTERS.some((filter) => options[filter] !== undefined);
    process.stdout.write(filtered ? 'No calls match.\n' : 'No calls yet.\n');
    return;
  }
  // One line says what is stuck and why: a failed call's reason, a waiting one's last error.
  const rows = page.calls.map(({ attachment, ...call }) => [
    call.first_seen_at ?? '',
    call.whatsapp_call_id,
    call.direction ?? '-',
    describePeer(call),
    call.outcome,
    attachment.state,
    call.record_status ?? '-',
    attachment.attempts === undefined ? '' : String(attachment.attempts),
    attachment.next_attempt_at ?? '',
    attachment.reason ?? attachment.last_error ?? '',
  ]);
  const header = ['FIRST SEEN', 'CALL ID', 'DIRECTION', 'PEER', 'OUTCOME', 'ATTACHMENT', 'RECORD STATUS', 'ATTEMPTS', 'NEXT ATTEMPT', 'REASON / LAST ERROR'];
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => (row[column] ?? '').length)));
  for (const row of [header, ...rows]) {
    process.stdout.write(`${row.map((cell, column) => cell.padEnd(widths[column] ?? 0)).join('  ').trimEnd()}\n`);
  }
}

/** The number (E.164 when it is one), and the name when a payload gave one: "+5511911112222 (Maria)". */
function describePeer(call: Pick<ApiCall, 'peer_phone' | 'peer_phone_raw' | 'peer_name'>): string {
  const phone = call.peer_phone ?? call.peer_phone_raw;
  if (phone === null) return call.peer_name ?? '-';
  return call.peer_name === null ? phone : `${phone} (${call.peer_name})`;
}

export async function retryCommand(
  callId: string | undefined,
  options: { url?: string; allPending?: boolean; allFailed?: boolean },
): Promise<void> {
  const config = loadConfig();
  const all = [options.allPending && 'pending', options.allFailed && 'failed'].filter((state) => typeof state === 'string');
  if ((callId === undefined) === (all.length === 0) || all.length > 1) {
    throw new AppError('name one call id, or pass --all-pending or --all-failed', { code: 'USAGE' });
  }
  for (const state of all) {
    const answer = (await callApi(config, options.url, `/api/calls/retry?state=${state}`, 'POST')) as { retried: number };
    process.stdout.write(`${answer.retried} ${state} call${answer.retried === 1 ? '' : 's'}: fetching now.\n`);
  }
  if (callId === undefined) return;
  const call = (await callApi(config, options.url, `/api/calls/${encodeURIComponent(callId)}/retry`, 'POST')) as ApiCall;
  process.stdout.write(`Call ${call.whatsapp_call_id}: attachment is ${call.attachment.state}; fetching the recording now.\n`);
}
