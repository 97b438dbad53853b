/**
 * `npm run bench`: every benchmark, each next to a baseline measured in the same run, then a
 * table on the terminal and the full figures as JSON in bench/results/.
 *   --only intake,download,chatwoot-upload,end-to-end,scale,concurrency,ready-behind-polls,intake-postgres,deliveries,chatwoot-delivery,dashboard   run some of them
 *   (intake-postgres uses BENCH_POSTGRES_URL, default the local server; it is left out when
 *   that server cannot be reached)
 *   --quick                                              shorter runs, smaller files
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { benchChatwootDelivery } from './chatwoot-delivery.ts';
import { benchChatwootUpload } from './chatwoot-upload.ts';
import { benchConcurrency } from './concurrency.ts';
import { benchDashboard } from './dashboard.ts';
import { benchDeliveries } from './deliveries.ts';
import { benchDownload } from './download.ts';
import { benchEndToEnd } from './end-to-end.ts';
import { benchIntake, benchIntakePostgres } from './intake.ts';
import { benchReadyBehindPolls } from './ready-behind-polls.ts';
import { benchScale } from './scale.ts';
import { REPO_ROOT } from './support.ts';

const { values } = parseArgs({ options: { only: { type: 'string' }, quick: { type: 'boolean', default: false } } });
const quick = values.quick ?? false;
const benchmarks: Record<string, () => Promise<Record<string, unknown> & { targets: Record<string, boolean> }>> = {
  intake: () => benchIntake(quick ? 5 : 10),
  download: () => benchDownload(quick ? [10, 100] : [10, 100, 1024]),
  'chatwoot-upload': () => benchChatwootUpload(20),
  'end-to-end': () => benchEndToEnd(quick ? 200 : 500, 50),
  scale: () => benchScale(5),
  concurrency: () => benchConcurrency(quick ? 80 : 200, 200),
  'ready-behind-polls': () => benchReadyBehindPolls(quick ? 400 : 2000, quick ? 5 : 10),
  'intake-postgres': () => benchIntakePostgres(quick ? 5 : 10, POSTGRES_URL),
  deliveries: () => benchDeliveries(quick ? 300 : 1000, 10),
  'chatwoot-delivery': () => benchChatwootDelivery(quick ? 20 : 50, quick ? 300 : 1000, 5),
  dashboard: () => benchDashboard(quick ? 100 : 300, quick ? 10 : 30),
};
const POSTGRES_URL = process.env.BENCH_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const selected = values.only ? values.only.split(',') : await defaultSelection();
for (const name of selected) if (!benchmarks[name]) throw new Error(`unknown benchmark "${name}"; known: ${Object.keys(benchmarks).join(', ')}`);

/** Everything, but the PostgreSQL one when no PostgreSQL answers (said, not silently). */
async function defaultSelection(): Promise<string[]> {
  const client = new pg.Client({ connectionString: POSTGRES_URL, connectionTimeoutMillis: 3_000 });
  const reachable = await client.connect().then(() => true, () => false);
  await client.end().catch(() => {});
  if (!reachable) console.log(`PostgreSQL is not reachable at ${POSTGRES_URL}: intake-postgres is left out (set BENCH_POSTGRES_URL).\n`);
  return Object.keys(benchmarks).filter((name) => reachable || name !== 'intake-postgres');
}

const machine = {
  cpu: os.cpus()[0]?.model ?? 'unknown',
  cores: os.cpus().length,
  memory_gib: Math.round(os.totalmem() / 1024 ** 3),
  kernel: os.release(),
  node: process.version,
};
console.log(`wavoip-recordings benchmarks on ${machine.cores} × ${machine.cpu}, ${machine.memory_gib} GiB, Node ${machine.node}${quick ? ' (quick)' : ''}\n`);

const results: Record<string, unknown>[] = [];
for (const name of selected) {
  const started = performance.now();
  process.stdout.write(`${name} … `);
  const result = await (benchmarks[name] as () => Promise<Record<string, unknown> & { targets: Record<string, boolean> }>)();
  process.stdout.write(`${((performance.now() - started) / 1000).toFixed(0)}s\n`);
  results.push(result);
  printResult(result);
}

const stamp = new Date().toISOString().replace(/[:.]/g, '-');
const directory = path.join(REPO_ROOT, 'bench', 'results');
fs.mkdirSync(directory, { recursive: true });
const report = JSON.stringify({ date: new Date().toISOString(), machine, quick, results }, null, 2);
fs.writeFileSync(path.join(directory, `${stamp}.json`), report);
fs.writeFileSync(path.join(directory, 'latest.json'), report);
console.log(`\nFull figures: bench/results/${stamp}.json`);

function printResult(result: Record<string, unknown> & { targets: Record<string, boolean> }): void {
  const flat = flatten(result);
  for (const [key, value] of Object.entries(flat)) {
    if (key === 'name' || key.startsWith('targets.')) continue;
    console.log(`  ${key.padEnd(52)} ${value}`);
  }
  for (const [target, met] of Object.entries(result.targets)) console.log(`  ${met ? '✔ met   ' : '✘ missed'} ${target}`);
  console.log('');
}

function flatten(value: unknown, prefix = ''): Record<string, unknown> {
  if (typeof value !== 'object' || value === null) return { [prefix]: value };
  if (Array.isArray(value)) {
    return Object.assign({}, ...value.map((item, index) => flatten(item, `${prefix}[${index}]`)));
  }
  return Object.assign({}, ...Object.entries(value).map(([key, item]) => flatten(item, prefix ? `${prefix}.${key}` : key)));
}
