/**
 * A load generator in its own process (so it does not share the service's event loop):
 * posts a realistic mix of WaVoIP events with autocannon and prints its result as JSON.
 * Usage: tsx bench/load-generator.ts '<json options>'
 */
import autocannon from 'autocannon';

interface LoadOptions {
  url: string;
  connections: number;
  durationSeconds: number;
  /** Requests per second for all connections together; omitted means as fast as possible. */
  overallRate?: number;
}

const options = JSON.parse(process.argv[2] ?? '{}') as LoadOptions;
let counter = 0;

/** Roughly what a busy device sends: heartbeats, call updates and recording updates. */
function nextEvent(): Record<string, unknown> {
  counter += 1;
  const callId = `bench-${process.pid}-${Math.floor(counter / 4)}`;
  switch (counter % 10) {
    case 0:
    case 1:
    case 2:
    case 3:
      return { type: 'DEVICE', action: 'UPDATE', id_session: 8758847 + (counter % 50), phone: '5566999050312', status: 'open' };
    case 4:
      return { type: 'CALL', action: 'CREATE', whatsapp_call_id: callId, status: 'INCOMING_RING', direction: 'INCOMING', caller: '5566999050312', receiver: '556692341814', id_session: 8758847, duration: 0, transport: 'WSS', is_contact: true };
    case 5:
      return { type: 'CALL', action: 'UPDATE', whatsapp_call_id: callId, status: 'ACTIVE', direction: 'INCOMING', id_session: 8758847 };
    case 6:
      return { type: 'CALL', action: 'UPDATE', whatsapp_call_id: callId, status: 'ENDED', duration: 45, record_status: 'RECORDING', id_session: 8758847 };
    case 7:
      return { type: 'RECORD', action: 'UPDATE', whatsapp_call_id: callId, id_session: 8758847, record_status: 'RECORDING' };
    default:
      return { type: 'RECORD', action: 'UPDATE', whatsapp_call_id: callId, id_session: 8758847, record_status: 'MIXING', record_url: `https://storage.wavoip.com/${callId}` };
  }
}

const result = await autocannon({
  url: options.url,
  method: 'POST',
  connections: options.connections,
  duration: options.durationSeconds,
  ...(options.overallRate ? { overallRate: options.overallRate } : {}),
  headers: { 'content-type': 'application/json' },
  requests: [{ setupRequest: (request) => ({ ...request, body: JSON.stringify(nextEvent()) }) }],
});

process.stdout.write(
  `${JSON.stringify({
    requestsPerSecond: result.requests.average,
    latencyP50Ms: result.latency.p50,
    latencyP99Ms: result.latency.p99,
    latencyMaxMs: result.latency.max,
    total: result.requests.total,
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
  })}\n`,
);
