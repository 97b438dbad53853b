import path from 'node:path';
import Database from 'better-sqlite3';
import { NO_POLLING, WEBHOOK_TOKEN, makeDataDir, startChildService, testEnvironment } from '../test/support/service-harness.ts';
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

const load = (url: string, durationSeconds: number, overallRate?: number) =>
  runScript<LoadResult>('bench/load-generator.ts', [JSON.stringify({ url, connections: 50, durationSeconds, overallRate })]);

/**
 * Webhook intake with durable acknowledgements against a bare Fastify route that stores
 * nothing, both driven by the same load generator in its own process.
 */
export async function benchIntake(seconds: number) {
  const dataDir = await makeDataDir();
  const service = await startChildService(
    testEnvironment('http://127.0.0.1:9', dataDir, { ...NO_POLLING, LOG_LEVEL: 'info' }),
  );
  const webhookUrl = `${service.url}/webhooks/wavoip?token=${WEBHOOK_TOKEN}`;
  const bare = await startScriptServer('bench/bare-server.ts');
  const bareUrl = `${bare.url}/webhooks/wavoip`;
  try {
    await load(webhookUrl, 2);
    await load(bareUrl, 2);
    const serviceMax = await load(webhookUrl, seconds);
    const bareMax = await load(bareUrl, seconds);
    const serviceFixed = await load(webhookUrl, seconds, 2000);
    const bareFixed = await load(bareUrl, seconds, 2000);

    await service.kill('SIGTERM');
    const db = new Database(path.join(dataDir, 'wavoip-recordings.sqlite'), { readonly: true });
    const stored = (db.prepare('select count(*) as n from events').get() as { n: number }).n;
    const unprocessed = (db.prepare('select count(*) as n from events where processed_at is null').get() as { n: number }).n;
    db.close();
    const acknowledged = [serviceMax, serviceFixed].reduce((sum, run) => sum + run.total - run.non2xx, 0);

    return {
      name: 'intake',
      service_max: serviceMax,
      bare_max: bareMax,
      service_at_2000_rps: serviceFixed,
      bare_at_2000_rps: bareFixed,
      throughput_ratio: round(serviceMax.requestsPerSecond / bareMax.requestsPerSecond, 3),
      acknowledged_measured_runs: acknowledged,
      stored_events_all_runs: stored,
      unprocessed_after_shutdown: unprocessed,
      targets: {
        'throughput ≥ 50% of bare': serviceMax.requestsPerSecond >= 0.5 * bareMax.requestsPerSecond,
        'p99 < 10 ms at 2,000 req/s': serviceFixed.latencyP99Ms < 10,
      },
    };
  } finally {
    await bare.stop();
    await service.kill('SIGKILL');
  }
}
