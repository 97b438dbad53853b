import path from 'node:path';
import Database from 'better-sqlite3';
import { NO_POLLING, WEBHOOK_TOKEN, makeDataDir, startChildService, testEnvironment, waitFor } from '../test/support/service-harness.ts';
import { round, runScript, startScriptServer } from './support.ts';

interface LoadResult {
  requestsPerSecond: number;
  latencyP50Ms: number;
  latencyP99Ms: number;
  latencyMaxMs: number;
  total: number;
  non2xx: number;
  errors: number;
}

/** As fast as 50 connections go; or a fixed rate over 10 connections, as a sender's pool would. */
const load = (url: string, durationSeconds: number, overallRate?: number) =>
  runScript<LoadResult>('bench/load-generator.ts', [
    JSON.stringify({ url, connections: overallRate ? 10 : 50, durationSeconds, overallRate }),
  ]);

function countEvents(dataDir: string): { stored: number; unprocessed: number } {
  const db = new Database(path.join(dataDir, 'wavoip-recordings.sqlite'), { readonly: true });
  try {
    const stored = (db.prepare('select count(*) as n from events').get() as { n: number }).n;
    const unprocessed = (db.prepare('select count(*) as n from events where processed_at is null').get() as { n: number }).n;
    return { stored, unprocessed };
  } finally {
    db.close();
  }
}

/**
 * One run against a fresh service: warm up, let processing catch up, measure, then time how
 * long processing takes to catch up again (events are applied after the answer).
 */
async function measureService(seconds: number, overallRate?: number) {
  const dataDir = await makeDataDir();
  const service = await startChildService(testEnvironment('http://127.0.0.1:9', dataDir, { ...NO_POLLING, LOG_LEVEL: 'info' }), {
    keepLogs: false,
  });
  const url = `${service.url}/webhooks/wavoip?token=${WEBHOOK_TOKEN}`;
  try {
    await load(url, 2, overallRate);
    await waitFor(() => countEvents(dataDir).unprocessed === 0, 'warm-up events processed', 120_000);
    const before = countEvents(dataDir).stored;
    const started = performance.now();
    const result = await load(url, seconds, overallRate);
    await waitFor(() => countEvents(dataDir).unprocessed === 0, 'events processed', 300_000);
    const processedMs = performance.now() - started;
    const { stored } = countEvents(dataDir);
    const acknowledged = result.total - result.non2xx;
    return {
      ...result,
      acknowledged,
      stored: stored - before,
      processed_per_second: round((stored - before) / (processedMs / 1000), 0),
    };
  } finally {
    await service.kill('SIGTERM');
  }
}

async function measureBare(seconds: number, overallRate?: number) {
  const bare = await startScriptServer('bench/bare-server.ts');
  try {
    const url = `${bare.url}/webhooks/wavoip`;
    await load(url, 2, overallRate);
    return await load(url, seconds, overallRate);
  } finally {
    await bare.stop();
  }
}

/**
 * Webhook intake with durable acknowledgements against a bare Fastify route that stores
 * nothing, both driven by the same load generator in its own process, never at the same time.
 */
export async function benchIntake(seconds: number) {
  const serviceMax = await measureService(seconds);
  const bareMax = await measureBare(seconds);
  const serviceFixed = await measureService(seconds, 2000);
  const bareFixed = await measureBare(seconds, 2000);
  return {
    name: 'intake',
    service_max: serviceMax,
    bare_max: bareMax,
    service_at_2000_rps: serviceFixed,
    bare_at_2000_rps: bareFixed,
    throughput_ratio: round(serviceMax.requestsPerSecond / bareMax.requestsPerSecond, 3),
    targets: {
      'every acknowledged event stored': serviceMax.stored >= serviceMax.acknowledged && serviceFixed.stored >= serviceFixed.acknowledged,
      'throughput ≥ 50% of bare': serviceMax.requestsPerSecond >= 0.5 * bareMax.requestsPerSecond,
      'p99 < 10 ms at 2,000 req/s': serviceFixed.latencyP99Ms < 10,
    },
  };
}
