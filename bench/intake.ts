import { randomBytes } from 'node:crypto';
import path from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
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

type EventCounter = () => Promise<{ stored: number; unprocessed: number }>;

function sqliteEventCounter(dataDir: string): EventCounter {
  return async () => {
    const db = new Database(path.join(dataDir, 'wavoip-recordings.sqlite'), { readonly: true });
    try {
      const stored = (db.prepare('select count(*) as n from events').get() as { n: number }).n;
      const unprocessed = (db.prepare('select count(*) as n from events where processed_at is null').get() as { n: number }).n;
      return { stored, unprocessed };
    } finally {
      db.close();
    }
  };
}

function postgresEventCounter(url: string): EventCounter {
  return async () => {
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      const { rows } = await client.query<{ stored: string; unprocessed: string }>(
        'select count(*) as stored, count(*) filter (where processed_at is null) as unprocessed from events',
      );
      return { stored: Number(rows[0]!.stored), unprocessed: Number(rows[0]!.unprocessed) };
    } finally {
      await client.end();
    }
  };
}

/** A database of the benchmark's own on the PostgreSQL server at `adminUrl`, dropped after. */
async function withPostgresDatabase<T>(adminUrl: string, run: (url: string) => Promise<T>): Promise<T> {
  const name = `wavoip_bench_${randomBytes(4).toString('hex')}`;
  const admin = async (statement: string) => {
    const client = new pg.Client({ connectionString: adminUrl });
    await client.connect();
    try {
      await client.query(statement);
    } finally {
      await client.end();
    }
  };
  await admin(`create database "${name}"`);
  try {
    const url = new URL(adminUrl);
    url.pathname = `/${name}`;
    return await run(url.toString());
  } finally {
    await admin(`drop database if exists "${name}" with (force)`);
  }
}

/**
 * One run against a fresh service: warm up, let processing catch up, measure, then time how
 * long processing takes to catch up again (events are applied after the answer).
 */
async function measureService(seconds: number, overallRate?: number, databaseUrl?: string) {
  const dataDir = await makeDataDir();
  const countEvents = databaseUrl ? postgresEventCounter(databaseUrl) : sqliteEventCounter(dataDir);
  const database: Record<string, string> = databaseUrl ? { DATABASE_URL: databaseUrl } : {};
  const service = await startChildService(testEnvironment('http://127.0.0.1:9', dataDir, { ...NO_POLLING, LOG_LEVEL: 'info', ...database }), {
    keepLogs: false,
  });
  const url = `${service.url}/webhooks/wavoip?token=${WEBHOOK_TOKEN}`;
  try {
    await load(url, 2, overallRate);
    await waitFor(async () => (await countEvents()).unprocessed === 0, 'warm-up events processed', 120_000);
    const before = (await countEvents()).stored;
    const started = performance.now();
    const result = await load(url, seconds, overallRate);
    await waitFor(async () => (await countEvents()).unprocessed === 0, 'events processed', 300_000);
    const processedMs = performance.now() - started;
    const { stored } = await countEvents();
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

/**
 * The same intake on PostgreSQL (one replica), against the bare route: what a fleet's replica
 * takes, and how far the network round trips of each commit put it from SQLite's.
 */
export async function benchIntakePostgres(seconds: number, adminUrl: string) {
  const serviceMax = await withPostgresDatabase(adminUrl, (url) => measureService(seconds, undefined, url));
  const bareMax = await measureBare(seconds);
  const serviceFixed = await withPostgresDatabase(adminUrl, (url) => measureService(seconds, 2000, url));
  return {
    name: 'intake-postgres',
    service_max: serviceMax,
    bare_max: bareMax,
    service_at_2000_rps: serviceFixed,
    throughput_ratio: round(serviceMax.requestsPerSecond / bareMax.requestsPerSecond, 3),
    targets: {
      'every acknowledged event stored': serviceMax.stored >= serviceMax.acknowledged && serviceFixed.stored >= serviceFixed.acknowledged,
      'p99 < 10 ms at 2,000 req/s': serviceFixed.latencyP99Ms < 10,
    },
  };
}
