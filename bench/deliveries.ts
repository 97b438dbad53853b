import { NO_POLLING, makeDataDir, startChildService, testEnvironment } from '../test/support/service-harness.ts';
import { OUTBOUND_SECRET, startWebhookReceiver } from '../test/support/webhook-receiver.ts';
import { Webhook } from 'standardwebhooks';
import { request } from 'undici';
import fs from 'node:fs';
import { readMemory, round } from './support.ts';

/** User and system CPU time a process has used, in seconds (Linux, /proc). */
function cpuSeconds(pid: number): number {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

const CONCURRENCY = 4;

/**
 * Many calls ending at once, each a `call.ended` webhook to a receiver that takes `receiverDelayMs`
 * per request (every signature verified): the outbox must drain at the receiver's pace (the
 * baseline: a bare client keeping DELIVERY_CONCURRENCY signed requests in flight against the same
 * receiver, on the same machine, in the same run), with the service's
 * memory flat however long the backlog (deliveries are read from the database a few at a time).
 */
export async function benchDeliveries(calls: number, receiverDelayMs: number) {
  const baselinePerSecond = await measureReceiverPace(calls, receiverDelayMs);
  const receiver = await startWebhookReceiver(OUTBOUND_SECRET, { always: { kind: 'delayed', delayMs: receiverDelayMs } });
  const env = testEnvironment('http://127.0.0.1:9', await makeDataDir(), {
    ...NO_POLLING,
    LOG_LEVEL: 'info',
    OUTBOUND_WEBHOOK_URLS: receiver.url,
    OUTBOUND_WEBHOOK_SECRET: OUTBOUND_SECRET,
    DELIVERY_CONCURRENCY: String(CONCURRENCY),
  });
  const service = await startChildService(env, { keepLogs: false });
  const pid = service.child.pid as number;
  try {
    const memoryBefore = readMemory(pid).rssMiB;
    const started = performance.now();
    const samples: number[] = [];
    const sampler = setInterval(() => samples.push(readMemory(pid).rssMiB), 100);
    // All at once, as a burst of hang-ups would come: 50 webhooks in flight at a time.
    for (let index = 0; index < calls; index += 50) {
      await Promise.all(
        Array.from({ length: Math.min(50, calls - index) }, async (_, offset) => {
          const response = await service.postWebhook({ type: 'CALL', whatsapp_call_id: `drain-${index + offset}`, status: 'NOT_ANSWERED', direction: 'INCOMING', caller: '5511987654321' });
          if (response.status !== 200) throw new Error(`webhook answered ${response.status}`);
        }),
      );
    }
    const acknowledgedMs = performance.now() - started;
    const cpuAtAcknowledged = cpuSeconds(pid);
    const deliveredWhenAcknowledged = new Set(receiver.received().map((request) => request.id)).size;
    while (new Set(receiver.received().map((request) => request.id)).size < calls) await new Promise((resolve) => setTimeout(resolve, 20));
    const drainedMs = performance.now() - started;
    const drainCpuSeconds = cpuSeconds(pid) - cpuAtAcknowledged;
    clearInterval(sampler);
    const received = receiver.received();
    // The pace once intake is over: the backlog left, drained by the deliveries alone.
    const perSecond = (calls - deliveredWhenAcknowledged) / ((drainedMs - acknowledgedMs) / 1000);
    const receiverPace = baselinePerSecond;
    const peak = Math.max(...samples, memoryBefore);
    const firstHalf = samples.slice(0, Math.floor(samples.length / 2));
    const secondHalf = samples.slice(Math.floor(samples.length / 2));
    return {
      name: 'deliveries',
      calls,
      receiver_delay_ms: receiverDelayMs,
      delivery_concurrency: CONCURRENCY,
      all_acknowledged_ms: round(acknowledgedMs),
      delivered_when_all_acknowledged: deliveredWhenAcknowledged,
      all_delivered_ms: round(drainedMs),
      deliveries_per_second: round(perSecond),
      receiver_pace_in_theory_per_second: (CONCURRENCY * 1000) / receiverDelayMs,
      baseline_receiver_pace_per_second: round(receiverPace),
      of_receiver_pace: round(perSecond / receiverPace, 2),
      service_cpu_share_while_draining: round(drainCpuSeconds / ((drainedMs - acknowledgedMs) / 1000), 2),
      service_cpu_ms_per_delivery: round((drainCpuSeconds * 1000) / Math.max(calls - deliveredWhenAcknowledged, 1), 2),
      requests_sent: received.length,
      bad_signatures: received.filter((request) => request.error !== null).length,
      rss_before_mib: round(memoryBefore),
      rss_peak_mib: round(peak),
      rss_mean_first_half_mib: round(firstHalf.reduce((sum, value) => sum + value, 0) / Math.max(firstHalf.length, 1)),
      rss_mean_second_half_mib: round(secondHalf.reduce((sum, value) => sum + value, 0) / Math.max(secondHalf.length, 1)),
      targets: {
        'drains at ≥ 0.8× the receiver’s pace': perSecond >= 0.8 * receiverPace,
        'every call told once, every signature valid': received.length === calls && received.every((request) => request.error === null),
        'memory flat: peak < 64 MiB above the start': peak - memoryBefore < 64,
      },
    };
  } finally {
    await service.kill('SIGTERM');
    await receiver.close();
  }
}

/** The baseline: the same number of signed posts, DELIVERY_CONCURRENCY at a time, from a bare client. */
async function measureReceiverPace(calls: number, receiverDelayMs: number): Promise<number> {
  const receiver = await startWebhookReceiver(OUTBOUND_SECRET, { always: { kind: 'delayed', delayMs: receiverDelayMs } });
  const signer = new Webhook(OUTBOUND_SECRET);
  let next = 0;
  const started = performance.now();
  try {
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        for (let index = next++; index < calls; index = next++) {
          const id = `baseline-${index}`;
          const body = JSON.stringify({ type: 'call.ended', timestamp: new Date().toISOString(), data: { whatsapp_call_id: id } });
          const now = new Date();
          const answer = await request(receiver.url, {
            method: 'POST',
            headers: { 'content-type': 'application/json', 'webhook-id': id, 'webhook-timestamp': String(Math.floor(now.getTime() / 1000)), 'webhook-signature': signer.sign(id, now, body) },
            body,
          });
          await answer.body.dump();
        }
      }),
    );
    return calls / ((performance.now() - started) / 1000);
  } finally {
    await receiver.close();
  }
}
