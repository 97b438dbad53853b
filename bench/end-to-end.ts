import fs from 'node:fs';
import path from 'node:path';
import { makeDataDir, startChildService, testEnvironment, waitFor, type ChildService } from '../test/support/service-harness.ts';
import { listAttachedCalls, percentile, round, startFileServer } from './support.ts';
import { writeWavFile } from '../test/support/wav.ts';

const WARM_UP_CALLS = 10;

/** A CALL, then a READY; resolves once the READY is acknowledged. */
async function postCall(service: ChildService, origin: string, callId: string): Promise<void> {
  await service.postWebhook({ type: 'CALL', action: 'UPDATE', whatsapp_call_id: callId, status: 'ENDED', duration: 30, direction: 'INCOMING' });
  const ready = await service.postWebhook({ type: 'RECORD', action: 'UPDATE', whatsapp_call_id: callId, record_status: 'READY', record_url: `${origin}/${callId}` });
  if (ready.status !== 200) throw new Error(`READY for ${callId} answered ${ready.status}`);
}

/**
 * Calls arriving at a steady pace, each a CALL then a READY for a 1 MiB recording: the time
 * from READY's 200 to the attachment being recorded (its `attached_at`).
 */
export async function benchEndToEnd(calls: number, callsPerSecond: number) {
  const workDir = await makeDataDir();
  const file = path.join(workDir, 'recording.wav');
  writeWavFile(file, 1024 * 1024);
  const server = await startFileServer({ file, contentType: 'audio/wav' });
  const service = await startChildService(testEnvironment(server.origin, await makeDataDir(), { LOG_LEVEL: 'info', POLL_INITIAL_DELAY: '30s', POLL_MAX_DELAY: '30m', POLL_MAX_WAIT: '4h' }), { keepLogs: false });
  const acknowledgedAt = new Map<string, number>();
  try {
    // The first downloads after start-up load the sniffing and metadata code; they are
    // reported apart, and the measured calls see the service as it runs all day.
    await postCall(service, server.origin, 'cold-0');
    const coldAcknowledged = Date.now();
    for (let index = 1; index < WARM_UP_CALLS; index++) await postCall(service, server.origin, `cold-${index}`);
    await waitFor(async () => (await service.call(`cold-${WARM_UP_CALLS - 1}`).catch(() => null))?.attachment.state === 'attached', 'warm-up', 60_000);
    const coldCall = await service.call('cold-0');
    const firstDownloadMs = Date.parse(coldCall.attachment.attached_at as string) - coldAcknowledged;

    const sends: Promise<void>[] = [];
    const started = Date.now();
    for (let index = 0; index < calls; index++) {
      const callId = `e2e-${index}`;
      const due = started + (index * 1000) / callsPerSecond;
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, due - Date.now())));
      sends.push(postCall(service, server.origin, callId).then(() => void acknowledgedAt.set(callId, Date.now())));
    }
    await Promise.all(sends);
    let attachedAt = new Map<string, number>();
    await waitFor(
      async () => {
        attachedAt = await listAttachedCalls(service);
        return attachedAt.size === calls + WARM_UP_CALLS;
      },
      `all ${calls} calls attached`,
      120_000,
    );
    const latencies = [...attachedAt].filter(([callId]) => acknowledgedAt.has(callId)).map(([callId, at]) => at - (acknowledgedAt.get(callId) as number)).sort((a, b) => a - b);
    const p50 = percentile(latencies, 50);
    const p99 = percentile(latencies, 99);
    return {
      name: 'end-to-end',
      calls,
      calls_per_second: callsPerSecond,
      recording_mib: 1,
      first_download_after_start_ms: firstDownloadMs,
      ready_to_attached_p50_ms: p50,
      ready_to_attached_p99_ms: p99,
      ready_to_attached_max_ms: latencies.at(-1),
      mean_ms: round(latencies.reduce((sum, value) => sum + value, 0) / latencies.length),
      targets: { 'p50 < 50 ms': p50 < 50, 'p99 < 250 ms': p99 < 250 },
    };
  } finally {
    await service.kill('SIGTERM');
    await server.close();
    fs.rmSync(file);
  }
}
