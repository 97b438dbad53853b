import type { Clock } from '../clock.ts';
import type { Config } from '../config/config.ts';
import type { Db } from '../db/database.ts';
import { listCallDeliveries } from '../db/deliveries-repository.ts';
import type { HttpClient } from '../download/http-client.ts';
import type { RecordingStore } from '../storage/recording-store.ts';
import { createChatwootClient } from './chatwoot-client.ts';
import { createChatwootDestination } from './chatwoot-destination.ts';
import type { Destination } from './destination.ts';
import type { RecordingLinks } from './recording-link.ts';
import { createWebhookDestination } from './webhook-destination.ts';

/** Every destination the settings configure, in a stable order: Chatwoot first, then each webhook URL. */
export function createDestinations(
  config: Pick<Config, 'outboundWebhookUrls' | 'chatwoot' | 'publicUrl' | 'deliveryConcurrency'>,
  deps: { client: HttpClient; clock: Clock; outboundSecret: string | null; links: RecordingLinks | null; db: Db; store: RecordingStore },
): Destination[] {
  const destinations: Destination[] = [];
  if (config.chatwoot !== null) {
    const { url, token, accountId } = config.chatwoot;
    destinations.push(
      createChatwootDestination({
        config: config.chatwoot,
        // As many connections as deliveries may run at once.
        client: createChatwootClient({ url, token, accountId, connections: config.deliveryConcurrency }),
        store: deps.store,
        publicUrl: config.publicUrl,
        deliveriesOf: (callId) => listCallDeliveries(deps.db, callId),
      }),
    );
  }
  if (deps.outboundSecret !== null && deps.links !== null) {
    for (const url of config.outboundWebhookUrls) {
      destinations.push(createWebhookDestination({ url, secret: deps.outboundSecret, client: deps.client, clock: deps.clock, links: deps.links }));
    }
  }
  return destinations;
}
