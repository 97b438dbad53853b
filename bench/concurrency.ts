import fs from 'node:fs';
import path from 'node:path';
import { loadConfig } from '../src/config/config.ts';
import { makeDataDir, startChildService, testEnvironment, waitFor, type ChildService } from '../test/support/service-harness.ts';
import { round, startFileServer, writeWavFile } from './support.ts';

async function countAttached(service: ChildService): Promise<number> {
  let count = 0;
  let cursor: string | null = null;
  do {
    const query: string = cursor ? `&cursor=${cursor}` : '';
    const page = (await (await service.api(`/api/calls?state=attached&limit=200${query}`)).json()) as { calls: unknown[]; next_cursor: string | null };
    count += page.calls.length;
    cursor = page.next_cursor;
  } while (cursor);
  return count;
}

/** Posts `count` READY events at once and waits until `attachedAfter` calls are attached in all. */
async function downloadAll(service: ChildService, origin: string, prefix: string, count: number, attachedAfter: number): Promise<number> {
  const started = performance.now();
  const responses = await Promise.all(
    Array.from({ length: count }, (_, index) =>
      service.postWebhook({ type: 'RECORD', whatsapp_call_id: `${prefix}-${index}`, record_status: 'READY', record_url: `${origin}/${prefix}-${index}` }),
    ),
  );
  if (responses.some((response) => response.status !== 200)) throw new Error('a READY was refused');
  await waitFor(async () => (await countAttached(service)) === attachedAfter, `${count} ${prefix} downloads`, 300_000);
  return performance.now() - started;
}

/**
 * Many READY events at once against a slow storage (latency before every answer): downloads
 * run DOWNLOAD_CONCURRENCY at a time, so the total approaches ⌈N / concurrency⌉ × one download.
 */
export async function benchConcurrency(events: number, latencyMs: number) {
  const concurrency = loadConfig({}).downloadConcurrency;
  const workDir = await makeDataDir();
  const file = path.join(workDir, 'recording.wav');
  writeWavFile(file, 5 * 1024 * 1024);
  const server = await startFileServer({ file, contentType: 'audio/wav', delayMs: latencyMs });
  const service = await startChildService(testEnvironment(server.origin, await makeDataDir(), { LOG_LEVEL: 'info' }), { keepLogs: false });
  try {
    const singleMs = await downloadAll(service, server.origin, 'single', 1, 1);
    // One download as the storage saw it: its latency plus the transfer, without our bookkeeping.
    const oneRequestMs = server.requestDurations()[0] as number;
    const totalMs = await downloadAll(service, server.origin, 'burst', events, 1 + events);
    const rounds = Math.ceil(events / concurrency);
    // Every slot busy all the time: rounds of one whole download (network, fsync, bookkeeping)…
    const idealMs = rounds * singleMs;
    // …and, as a floor no concurrency setting can beat, rounds of the storage's answer alone.
    const networkFloorMs = rounds * oneRequestMs;
    return {
      name: 'concurrency',
      events,
      recording_mib: 5,
      storage_latency_ms: latencyMs,
      download_concurrency: concurrency,
      max_parallel_requests_seen_by_storage: server.maxInFlight(),
      one_download_ready_to_attached_ms: round(singleMs, 0),
      one_request_at_storage_ms: round(oneRequestMs, 0),
      total_ms: round(totalMs, 0),
      ideal_ms: round(idealMs, 0),
      total_to_ideal: round(totalMs / idealMs, 2),
      network_floor_ms: round(networkFloorMs, 0),
      total_to_network_floor: round(totalMs / networkFloorMs, 2),
      targets: {
        'parallel up to DOWNLOAD_CONCURRENCY': server.maxInFlight() === concurrency,
        'total within 1.25× of ideal': totalMs / idealMs <= 1.25,
      },
    };
  } finally {
    await service.kill('SIGTERM');
    await server.close();
    fs.rmSync(file);
  }
}
