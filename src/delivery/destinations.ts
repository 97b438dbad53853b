import type { Clock } from '../clock.ts';
import type { Config } from '../config/config.ts';
import type { HttpClient } from '../download/http-client.ts';
import type { Destination } from './destination.ts';
import type { RecordingLinks } from './recording-link.ts';
import { createWebhookDestination } from './webhook-destination.ts';

/** Every destination the settings configure, in a stable order. (Chatwoot's joins here.) */
export function createDestinations(
  config: Pick<Config, 'outboundWebhookUrls'>,
  deps: { client: HttpClient; clock: Clock; outboundSecret: string | null; links: RecordingLinks | null },
): Destination[] {
  const destinations: Destination[] = [];
  if (deps.outboundSecret !== null && deps.links !== null) {
    for (const url of config.outboundWebhookUrls) {
      destinations.push(createWebhookDestination({ url, secret: deps.outboundSecret, client: deps.client, clock: deps.clock, links: deps.links }));
    }
  }
  return destinations;
}
