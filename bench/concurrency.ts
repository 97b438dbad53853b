import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { loadConfig } from '../src/config/config.ts';
import { makeDataDir, startChildService, testEnvironment, waitFor, type ChildService } from '../test/support/service-harness.ts';
import { listAttachedCalls, median, round, startFileServer } from './support.ts';
import { writeWavFile } from '../test/support/wav.ts';

/** Posts `count` READY events at once and waits until `attachedAfter` calls are attached in all. */
async function downloadAll(service: ChildService, origin: string, prefix: string, count: number, attachedAfter: number): Promise<number> {
  const started = performance.now();
  const responses = await Promise.all(
    Array.from({ length: count }, (_, index) =>
      service.postWebhook({ type: 'RECORD', whatsapp_call_id: `${prefix}-${index}`, record_status: 'READY', record_url: `${origin}/${prefix}-${index}` }),
    ),
  );
  if (responses.some((response) => response.status !== 200)) throw new Error('a READY was refused');
  await waitFor(async () => (await listAttachedCalls(service)).size === attachedAfter, `${count} ${prefix} downloads`, 300_000);
  return performance.now() - started;
}

/** The same downloads by curl, `concurrency` at a time, each to a file: this machine's floor. */
async function fetchAllWithCurl(origin: string, count: number, concurrency: number, workDir: string): Promise<number> {
  const outputDir = fs.mkdtempSync(path.join(workDir, 'curl-'));
  const urls = Array.from({ length: count }, (_, index) => `${origin}/curl-${index}`).join('\n');
  const started = performance.now();
  const child = spawn('xargs', ['-P', String(concurrency), '-I', '{}', 'sh', '-c', `curl -sS --fail -o "${outputDir}/$(basename {})" {}`], {
    stdio: ['pipe', 'inherit', 'inherit'],
  });
  child.stdin.end(urls);
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  if (code !== 0) throw new Error(`curl burst exited with ${code}`);
  const elapsed = performance.now() - started;
  fs.rmSync(outputDir, { recursive: true });
  return elapsed;
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
    // One download alone, three times (the median is the unit of the ideal)…
    const singles: number[] = [];
    for (let run = 0; run < 3; run++) singles.push(await downloadAll(service, server.origin, `single-${run}`, 1, run + 1));
    const singleMs = median(singles);
    // …and as the storage saw it: its latency plus the transfer, without our bookkeeping.
    const oneRequestMs = median(server.requestDurations());
    const totalMs = await downloadAll(service, server.origin, 'burst', events, 3 + events);
    // Read before curl runs against the same server: this figure is the service's alone.
    const maxParallel = server.maxInFlight();
    const curlMs = await fetchAllWithCurl(server.origin, events, concurrency, workDir);
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
      max_parallel_requests_seen_by_storage: maxParallel,
      one_download_ready_to_attached_ms: round(singleMs, 0),
      one_request_at_storage_ms: round(oneRequestMs, 0),
      total_ms: round(totalMs, 0),
      ideal_ms: round(idealMs, 0),
      total_to_ideal: round(totalMs / idealMs, 2),
      network_floor_ms: round(networkFloorMs, 0),
      total_to_network_floor: round(totalMs / networkFloorMs, 2),
      curl_same_concurrency_ms: round(curlMs, 0),
      total_to_curl_same_concurrency: round(totalMs / curlMs, 2),
      targets: {
        'parallel up to DOWNLOAD_CONCURRENCY': maxParallel === concurrency,
        'total within 1.25× of ⌈N/C⌉ × one download': totalMs / idealMs <= 1.25,
        'total within 1.25× of curl at the same concurrency': totalMs / curlMs <= 1.25,
      },
    };
  } finally {
    await service.kill('SIGTERM');
    await server.close();
    fs.rmSync(file);
  }
}
