import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { makeDataDir, startChildService, testEnvironment, waitFor, type ChildService } from '../test/support/service-harness.ts';
import { median, readMemory, resetPeakMemory, round, startFileServer } from './support.ts';
import { writeWavFile } from '../test/support/wav.ts';

const MiB = 1024 * 1024;
const REPETITIONS = 3;


async function run(command: string, args: string[]): Promise<void> {
  const child = spawn(command, args, { stdio: 'inherit' });
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  if (code !== 0) throw new Error(`${command} exited with ${code}`);
}

/** `curl -o`, and the same followed by an fsync of the file, which the service must also do. */
async function timeCurl(url: string, output: string): Promise<{ curlMs: number; curlSyncMs: number }> {
  const started = performance.now();
  await run('curl', ['-sS', '--fail', '-o', output, url]);
  const curlMs = performance.now() - started;
  await run('sync', [output]);
  return { curlMs, curlSyncMs: performance.now() - started };
}

async function timeServiceDownload(service: ChildService, callId: string, url: string): Promise<number> {
  const response = await service.postWebhook({ type: 'RECORD', whatsapp_call_id: callId, record_status: 'READY', record_url: url });
  if (response.status !== 200) throw new Error(`READY answered ${response.status}`);
  const started = performance.now();
  await waitFor(
    async () => (await service.call(callId).catch(() => null))?.attachment.state === 'attached',
    `${callId} attached`,
    600_000,
  );
  return performance.now() - started;
}

/**
 * Recordings of each size, served from loopback: the service (streaming, sha256, sniffing,
 * fsync and atomic rename, then the database) against `curl -o` of the same URL; medians of
 * three alternating runs. Peak memory is the service's over all of a size's downloads.
 */
export async function benchDownload(sizesMiB: number[]) {
  const workDir = await makeDataDir();
  const rows = [];
  for (const sizeMiB of sizesMiB) {
    const file = path.join(workDir, `recording-${sizeMiB}.wav`);
    writeWavFile(file, sizeMiB * MiB);
    const server = await startFileServer({ file, contentType: 'audio/wav' });
    const service = await startChildService(testEnvironment(server.origin, await makeDataDir(), { RECORDING_MAX_BYTES: '4GiB', LOG_LEVEL: 'info' }), { keepLogs: false });
    try {
      const pid = service.child.pid as number;
      const idle = readMemory(pid);
      // A first download loads the code it needs (sniffing, metadata), so what is measured
      // next is what a download costs, not what the first one after start-up costs.
      await timeServiceDownload(service, `warm-up-${sizeMiB}`, `${server.origin}/warm-up`);
      const afterWarmUp = readMemory(pid);
      const before = readMemory(pid);
      resetPeakMemory(pid);
      // This machine's disk and neighbours are noisy: alternate the two, and take medians.
      const curlRuns: number[] = [];
      const curlSyncRuns: number[] = [];
      const serviceRuns: number[] = [];
      for (let run = 0; run < REPETITIONS; run++) {
        const curlOutput = path.join(workDir, 'curl-output');
        const { curlMs, curlSyncMs } = await timeCurl(`${server.origin}/curl`, curlOutput);
        fs.rmSync(curlOutput);
        curlRuns.push(curlMs);
        curlSyncRuns.push(curlSyncMs);
        serviceRuns.push(await timeServiceDownload(service, `download-${sizeMiB}-${run}`, `${server.origin}/download-${sizeMiB}-${run}`));
      }
      const after = readMemory(pid);
      const curlMs = median(curlRuns);
      const curlSyncMs = median(curlSyncRuns);
      const serviceMs = median(serviceRuns);
      const throughput = (ms: number) => round((sizeMiB / ms) * 1000, 0);
      rows.push({
        size_mib: sizeMiB,
        repetitions: REPETITIONS,
        curl_ms: round(curlMs, 0),
        curl_fsync_ms: round(curlSyncMs, 0),
        service_ms: round(serviceMs, 0),
        curl_mib_s: throughput(curlMs),
        service_mib_s: throughput(serviceMs),
        throughput_ratio: round(curlMs / serviceMs, 3),
        throughput_ratio_vs_curl_fsync: round(curlSyncMs / serviceMs, 3),
        rss_before_mib: round(before.rssMiB),
        peak_rss_mib: round(after.peakMiB),
        peak_rss_growth_mib: round(after.peakMiB - before.rssMiB),
        rss_idle_before_first_download_mib: round(idle.rssMiB),
        peak_rss_first_download_mib: round(afterWarmUp.peakMiB),
        peak_rss_growth_from_idle_mib: round(Math.max(afterWarmUp.peakMiB, after.peakMiB) - idle.rssMiB),
      });
    } finally {
      await service.kill('SIGTERM');
      await server.close();
      fs.rmSync(file);
    }
  }
  return {
    name: 'download',
    rows,
    targets: {
      'throughput ≥ 80% of curl at every size': rows.every((row) => row.throughput_ratio >= 0.8),
      'peak RSS growth < 64 MiB from idle, first download included, at every size': rows.every(
        (row) => row.peak_rss_growth_from_idle_mib < 64,
      ),
    },
  };
}
