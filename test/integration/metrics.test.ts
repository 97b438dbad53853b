import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeWavoipStorage, type FakeWavoipStorage } from '../support/fake-wavoip-storage.ts';
import { makeDataDir, startInProcessService, testEnvironment, waitFor, type InProcessService } from '../support/service-harness.ts';

const ogg = fs.readFileSync(new URL('../fixtures/audio/call-pt-br-9s.ogg', import.meta.url));

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses the Prometheus text format far enough for these tests (no escaped quotes in our labels). */
function parseMetrics(text: string): Sample[] {
  return text
    .split('\n')
    .filter((line) => line !== '' && !line.startsWith('#'))
    .map((line) => {
      const match = /^(\w+)(?:\{(.*)\})? (\S+)$/.exec(line);
      if (!match) throw new Error(`not a sample line: ${line}`);
      const labels = Object.fromEntries([...(match[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((label) => [label[1], label[2]]));
      return { name: match[1]!, labels, value: Number(match[3]) };
    });
}

function value(samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  return samples.find((sample) => sample.name === name && Object.entries(labels).every(([key, wanted]) => sample.labels[key] === wanted))?.value;
}

let storage: FakeWavoipStorage;
let service: InProcessService;
const scrape = async () => {
  const response = await service.api('/metrics');
  expect(response.status).toBe(200);
  return parseMetrics(await response.text());
};

beforeAll(async () => {
  storage = await startFakeWavoipStorage();
  service = await startInProcessService(testEnvironment(storage.origin, await makeDataDir(), { DOWNLOAD_CONCURRENCY: '1' }), {
    httpTimeouts: { headersTimeoutMs: 60_000 },
  });
});
afterAll(async () => {
  await service?.stop();
  await storage?.close();
});

describe('GET /metrics', () => {
  it('needs the API token, like everything else the service knows', async () => {
    expect((await fetch(`${service.url}/metrics`)).status).toBe(401);
    expect((await service.api('/metrics', { token: 'not-the-token' })).status).toBe(401);
    const response = await service.api('/metrics');
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  });

  it('starts with every attachment state at 0 and nothing due', async () => {
    const samples = await scrape();
    for (const state of ['pending', 'attached', 'failed', 'empty', 'disabled', 'none', 'expired']) {
      expect(value(samples, 'wavoip_recordings_calls', { attachment_state: state })).toBe(0);
    }
    expect(value(samples, 'wavoip_recordings_fetch_jobs_running')).toBe(0);
    expect(value(samples, 'wavoip_recordings_fetch_jobs_due')).toBe(0);
    expect(value(samples, 'wavoip_recordings_fetch_job_oldest_due_age_seconds')).toBe(0);
    expect(value(samples, 'wavoip_recordings_process_resident_memory_bytes')).toBeGreaterThan(0);
    expect(value(samples, 'wavoip_recordings_database_up')).toBe(1);
  });

  it('counts webhooks by type and result, and times the accepted ones', async () => {
    // Rejected before it connected: no recording is expected, so nothing is polled.
    expect((await service.postWebhook({ type: 'CALL', whatsapp_call_id: 'M-CALL', status: 'REJECTED' })).status).toBe(200);
    expect((await service.postWebhook({ type: 'DEVICE', action: 'UPDATE', id_session: 1, status: 'open' })).status).toBe(200);
    expect((await service.postWebhook({ type: 'CALL' })).status).toBe(400);
    expect((await service.postWebhook('{"type":', { contentType: 'application/json' })).status).toBe(400);
    expect((await service.postWebhook({ type: 'CALL', whatsapp_call_id: 'M-X' }, { token: 'wrong-token' })).status).toBe(401);

    const samples = await scrape();
    const webhooks = (labels: Record<string, string>) => value(samples, 'wavoip_recordings_webhooks_total', labels);
    expect(webhooks({ type: 'CALL', result: 'accepted' })).toBe(1);
    expect(webhooks({ type: 'DEVICE', result: 'accepted' })).toBe(1);
    expect(webhooks({ type: 'none', result: 'invalid' })).toBe(2);
    expect(webhooks({ type: 'none', result: 'unauthorized' })).toBe(1);
    expect(value(samples, 'wavoip_recordings_webhook_intake_duration_seconds_count')).toBe(2);
    expect(value(samples, 'wavoip_recordings_auth_failures_total', { endpoint: 'webhook', result: 'unauthorized' })).toBe(1);
    await service.waitForAttachment('M-CALL', 'none');
    expect(value(await scrape(), 'wavoip_recordings_calls', { attachment_state: 'none' })).toBe(1);
  });

  it('counts fetch attempts by outcome, the bytes stored and the download time', async () => {
    storage.setRoute('/M-RETRIED', { kind: 'sequence', first: { kind: 'status', status: 503 }, times: 1, then: { kind: 'body', body: ogg, contentType: 'audio/ogg' } });
    await service.postWebhook({ type: 'RECORD', whatsapp_call_id: 'M-RETRIED', record_status: 'READY', record_url: storage.url('/M-RETRIED') });
    expect((await service.waitForAttachment('M-RETRIED')).attachment.state).toBe('attached');

    storage.setRoute('/M-GONE', { kind: 'status', status: 403 });
    await service.postWebhook({ type: 'RECORD', whatsapp_call_id: 'M-GONE', record_status: 'READY', record_url: storage.url('/M-GONE') });
    expect((await service.waitForAttachment('M-GONE')).attachment.state).toBe('failed');

    const samples = await scrape();
    const fetches = (outcome: string) => value(samples, 'wavoip_recordings_fetch_attempts_total', { mode: 'download', outcome });
    expect(fetches('retry')).toBe(1);
    expect(fetches('attached')).toBe(1);
    expect(fetches('failed')).toBe(1);
    expect(value(samples, 'wavoip_recordings_downloaded_bytes_total')).toBe(ogg.length);
    expect(value(samples, 'wavoip_recordings_download_duration_seconds_count', { mode: 'download' })).toBe(1);
    expect(value(samples, 'wavoip_recordings_download_duration_seconds_sum', { mode: 'download' })).toBeGreaterThan(0);
    expect(value(samples, 'wavoip_recordings_calls', { attachment_state: 'attached' })).toBe(1);
    expect(value(samples, 'wavoip_recordings_calls', { attachment_state: 'failed' })).toBe(1);
  });

  it('shows jobs due and how long the oldest has waited when downloads fall behind', async () => {
    // One download slot, held by a storage that never answers: the next READY has to wait.
    storage.setRoute('/M-STALLED', { kind: 'stall-before-headers' });
    storage.setRoute('/M-WAITING', { kind: 'body', body: ogg, contentType: 'audio/ogg' });
    await service.postWebhook({ type: 'RECORD', whatsapp_call_id: 'M-STALLED', record_status: 'READY', record_url: storage.url('/M-STALLED') });
    await waitFor(() => storage.requests('/M-STALLED') > 0, 'the stalled download started');
    await service.postWebhook({ type: 'RECORD', whatsapp_call_id: 'M-WAITING', record_status: 'READY', record_url: storage.url('/M-WAITING') });

    let samples: Sample[] = [];
    await waitFor(async () => {
      samples = await scrape();
      return (
        value(samples, 'wavoip_recordings_fetch_jobs_running') === 1 &&
        value(samples, 'wavoip_recordings_fetch_jobs_due') === 1 &&
        (value(samples, 'wavoip_recordings_fetch_job_oldest_due_age_seconds') ?? 0) > 0
      );
    }, 'one job running, one waiting for a slot');
    expect(storage.requests('/M-WAITING')).toBe(0);
  });
});
