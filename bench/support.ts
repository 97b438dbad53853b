import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ServiceClient } from '../test/support/service-harness.ts';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const TSX = path.join(REPO_ROOT, 'node_modules', '.bin', 'tsx');

/** Runs a TypeScript script in its own process and returns the JSON object it prints last. */
export async function runScript<T>(script: string, args: string[] = []): Promise<T> {
  const child = spawn(TSX, [path.join(REPO_ROOT, script), ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  if (code !== 0) throw new Error(`${script} exited with ${code}`);
  const last = output.trim().split('\n').at(-1) ?? '{}';
  return JSON.parse(last) as T;
}

/** Starts a long-running script that prints `{"url": …}` first; returns the URL and a stopper. */
export async function startScriptServer(script: string): Promise<{ url: string; pid: number; stop(): Promise<void> }> {
  const child = spawn(TSX, [path.join(REPO_ROOT, script)], { stdio: ['ignore', 'pipe', 'inherit'] });
  const url = await new Promise<string>((resolve, reject) => {
    let buffered = '';
    child.stdout.on('data', (chunk: Buffer) => {
      buffered += chunk.toString('utf8');
      const line = buffered.split('\n').find((candidate) => candidate.startsWith('{'));
      if (line) resolve((JSON.parse(line) as { url: string }).url);
    });
    child.once('exit', (code) => reject(new Error(`${script} exited with ${code}`)));
  });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  return {
    url,
    pid: child.pid as number,
    stop: async () => {
      child.kill('SIGKILL');
      await exited;
    },
  };
}

/** Every attached call of a running service, through the read API: call id → attached_at (ms). */
export async function listAttachedCalls(service: ServiceClient): Promise<Map<string, number>> {
  const attached = new Map<string, number>();
  let cursor: string | null = null;
  do {
    const query: string = cursor ? `&cursor=${cursor}` : '';
    const page = (await (await service.api(`/api/calls?state=attached&limit=200${query}`)).json()) as {
      calls: { whatsapp_call_id: string; attachment: { attached_at: string } }[];
      next_cursor: string | null;
    };
    for (const call of page.calls) attached.set(call.whatsapp_call_id, Date.parse(call.attachment.attached_at));
    cursor = page.next_cursor;
  } while (cursor);
  return attached;
}

/** Resident and peak resident memory of a process, in MiB, from /proc. */
export function readMemory(pid: number): { rssMiB: number; peakMiB: number } {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? Number.NaN);
  return { rssMiB: kib('VmRSS') / 1024, peakMiB: kib('VmHWM') / 1024 };
}

/** Resets VmHWM to the current RSS (Linux: write 5 to clear_refs), so a peak can be measured from now on. */
export function resetPeakMemory(pid: number): void {
  fs.writeFileSync(`/proc/${pid}/clear_refs`, '5');
}

export const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] as number;

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] as number;
}

/** A loopback storage server for benchmarks: serves one file for every path, optionally after a delay. */
export async function startFileServer(options: { file: string; contentType: string; delayMs?: number }) {
  let inFlight = 0;
  let maxInFlight = 0;
  const durations: number[] = [];
  const server = http.createServer((request, response) => {
    const started = performance.now();
    inFlight += 1;
    maxInFlight = Math.max(maxInFlight, inFlight);
    response.once('close', () => {
      inFlight -= 1;
      durations.push(performance.now() - started);
    });
    const send = () => {
      const size = fs.statSync(options.file).size;
      response.writeHead(200, { 'content-type': options.contentType, 'content-length': size });
      fs.createReadStream(options.file).pipe(response);
    };
    if (options.delayMs) setTimeout(send, options.delayMs);
    else send();
    request.resume();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    origin,
    maxInFlight: () => maxInFlight,
    /** How long each answered request took, from arrival to the last byte, in order of completion. */
    requestDurations: () => [...durations],
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export const round = (value: number, digits = 1) => Number(value.toFixed(digits));
