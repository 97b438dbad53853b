import { loadConfig } from '../config/config.ts';
import { AppError } from '../errors.ts';
import { callApi } from './service-client.ts';

interface ApiDelivery {
  destination: string;
  kind: string;
  state: string;
}

/**
 * `redeliver <call-id>`: the call's facts sent again to every destination (or `--destination`);
 * `redeliver --since <date>`: calls from before a destination was configured get the deliveries
 * they would have had.
 */
export async function redeliverCommand(callId: string | undefined, options: { since?: string; destination?: string; url?: string }): Promise<void> {
  if ((callId === undefined) === (options.since === undefined)) throw new AppError('name one call id, or pass --since <date>', { code: 'USAGE' });
  const config = loadConfig();
  if (options.since !== undefined) {
    if (options.destination !== undefined) throw new AppError('--destination goes with a call id; --since fills in every destination', { code: 'USAGE' });
    const answer = (await callApi(config, options.url, `/api/deliveries/backfill?since=${encodeURIComponent(options.since)}`, 'POST')) as {
      calls: number;
      deliveries: number;
    };
    process.stdout.write(`${answer.deliveries} deliveries added for calls first seen since ${options.since} (${answer.calls} calls looked at).\n`);
    return;
  }
  const query = options.destination === undefined ? '' : `?destination=${encodeURIComponent(options.destination)}`;
  const answer = (await callApi(config, options.url, `/api/calls/${encodeURIComponent(callId as string)}/redeliver${query}`, 'POST')) as {
    added: number;
    deliveries: ApiDelivery[];
  };
  process.stdout.write(`Call ${callId}: ${answer.added} deliveries added.\n`);
  for (const delivery of answer.deliveries) process.stdout.write(`  ${delivery.destination}  ${delivery.kind}  ${delivery.state}\n`);
}
