import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { API_TOKEN, ServiceClient, waitFor, WEBHOOK_TOKEN, type LogLine } from '../support/service-harness.ts';

/**
 * The production install, done the way the Dockerfile does it, for machines without a container
 * engine: the files its COPY lines name, `npm ci --omit=dev` run by an unprivileged user (so
 * better-sqlite3 compiles without root), then the image's CMD and HEALTHCHECK run as that user,
 * with the application files read-only and only DATA_DIR writable.
 *
 * It needs no network: npm installs offline from a copy of this machine's npm cache (which the
 * `npm ci` that installed the test's own dependencies filled), better-sqlite3 is built from
 * source against the headers of the Node running the test, and the service talks only to the
 * test over loopback. The compile takes a couple of minutes.
 */

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const run = promisify(execFile);
const INSTALL_TIMEOUT_MS = 10 * 60_000;

interface DockerfilePlan {
  /** Per build stage, the paths its COPY lines take from the build context. */
  stageCopies: string[][];
  /** The final stage's ENV. */
  env: Record<string, string>;
  cmd: string[];
  healthcheck: string[];
}

/** Reads what the test needs from the Dockerfile, so that the test follows it when it changes. */
async function readDockerfile(): Promise<DockerfilePlan> {
  const text = await fs.readFile(path.join(REPO_ROOT, 'Dockerfile'), 'utf8');
  const instructions = text
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'));
  const plan: DockerfilePlan = { stageCopies: [], env: {}, cmd: [], healthcheck: [] };
  for (const instruction of instructions) {
    const [keyword = '', ...words] = instruction.split(/\s+/);
    const rest = instruction.slice(keyword.length).trim();
    if (keyword === 'FROM') {
      plan.stageCopies.push([]);
      plan.env = {};
    } else if (keyword === 'COPY' && !words.some((word) => word.startsWith('--from='))) {
      const paths = words.filter((word) => !word.startsWith('--'));
      plan.stageCopies.at(-1)?.push(...paths.slice(0, -1));
    } else if (keyword === 'ENV') {
      for (const [, name = '', value = ''] of rest.matchAll(/(\w+)=(\S+)/g)) plan.env[name] = value;
    } else if (keyword === 'CMD') {
      plan.cmd = JSON.parse(rest) as string[];
    } else if (keyword === 'HEALTHCHECK') {
      plan.healthcheck = JSON.parse(rest.slice(rest.indexOf(' CMD ') + 5)) as string[];
    }
  }
  return plan;
}

/** Runs as root in CI: then everything runs as `nobody`; otherwise as the user running the tests. */
function unprivilegedUser(): { uid: number; gid: number } | undefined {
  return process.getuid?.() === 0 ? { uid: 65534, gid: 65534 } : undefined;
}

function exists(file: string): Promise<boolean> {
  return fs.access(file).then(
    () => true,
    () => false,
  );
}

/** Node's headers next to its binary, when installed (Debian's nodejs, the official tarballs). */
async function nodeHeadersDir(): Promise<string | undefined> {
  const prefix = path.resolve(path.dirname(process.execPath), '..');
  return (await exists(path.join(prefix, 'include/node/node.h'))) ? prefix : undefined;
}

describe('production install as the Dockerfile does it', () => {
  const user = unprivilegedUser();
  let root: string;
  let app: string;
  let dataDir: string;
  let home: string;
  let tmp: string;
  let userEnv: Record<string, string>;
  let plan: DockerfilePlan;
  let install: { stdout: string; stderr: string };

  beforeAll(async () => {
    plan = await readDockerfile();
    root = await fs.mkdtemp(path.join(os.tmpdir(), 'wavoip-production-install-'));
    await fs.chmod(root, 0o755);
    app = path.join(root, 'app');
    dataDir = path.join(root, 'data');
    home = path.join(root, 'home');
    tmp = path.join(root, 'tmp');
    const npmCache = path.join(root, 'npm-cache');
    for (const dir of [app, dataDir, home, tmp, npmCache]) await fs.mkdir(dir);
    const { stdout: ourCache } = await run('npm', ['config', 'get', 'cache'], { cwd: REPO_ROOT });
    await fs.cp(path.join(ourCache.trim(), '_cacache'), path.join(npmCache, '_cacache'), { recursive: true });
    const [dependencyFiles = [], ...laterStages] = plan.stageCopies;
    for (const file of dependencyFiles) await fs.cp(path.join(REPO_ROOT, file), path.join(app, path.basename(file)), { recursive: true });
    if (user) await run('chown', ['-R', `${user.uid}:${user.gid}`, app, dataDir, home, tmp, npmCache]);

    const headers = await nodeHeadersDir();
    userEnv = {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: home,
      TMPDIR: tmp,
      npm_config_cache: npmCache,
      npm_config_update_notifier: 'false',
      // Compile better-sqlite3 (no prebuilt binary from GitHub) against local headers.
      npm_config_build_from_source: 'true',
      ...(headers ? { npm_config_nodedir: headers } : {}),
    };
    install = await run('npm', ['ci', '--omit=dev', '--offline', '--no-audit', '--no-fund'], {
      cwd: app,
      env: userEnv,
      ...user,
      timeout: INSTALL_TIMEOUT_MS,
      maxBuffer: 64 * 1024 * 1024,
    });

    // The final stage: the application files beside the dependencies, none writable by the user,
    // nor its home (a container may run with a read-only root file system and a tmpfs on /tmp).
    for (const file of laterStages.at(-1) ?? []) await fs.cp(path.join(REPO_ROOT, file), path.join(app, file), { recursive: true });
    await run('chmod', ['-R', 'a-w', app, home]);
  }, INSTALL_TIMEOUT_MS + 60_000);

  afterAll(async () => {
    if (!root) return;
    await run('chmod', ['-R', 'u+w', root]);
    await fs.rm(root, { recursive: true, force: true });
  });

  it('installs the production dependencies only, with better-sqlite3 built and no engine warning', async () => {
    expect(install.stderr).not.toContain('EBADENGINE');
    const installed = await fs.readdir(path.join(app, 'node_modules'));
    expect(installed).toEqual(expect.arrayContaining(['better-sqlite3', 'fastify', 'tsx']));
    // What the lock file marks as needed by development only (the test tools among them) is absent.
    const lock = JSON.parse(await fs.readFile(path.join(REPO_ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, { dev?: boolean }> };
    const devOnly = Object.entries(lock.packages).flatMap(([location, entry]) => (entry.dev ? [location] : []));
    expect(devOnly).toEqual(expect.arrayContaining(['node_modules/vitest', 'node_modules/typescript']));
    const present: string[] = [];
    for (const location of devOnly) if (await exists(path.join(app, location))) present.push(location);
    expect(present).toEqual([]);
    await fs.access(path.join(app, 'node_modules/better-sqlite3/build/Release/better_sqlite3.node'));
  });

  it("runs the image's CMD as the unprivileged user: health check, a webhook, the API, then SIGTERM exits 0", async () => {
    expect(plan.cmd[0]).toBe('node');
    expect(plan.env.DATA_DIR).toBeDefined();
    const env = {
      ...userEnv,
      ...plan.env,
      // The image's /data and port 3000, moved to this machine's temporary directory and a free port.
      DATA_DIR: dataDir,
      PORT: '0',
      HOST: '127.0.0.1',
      WEBHOOK_TOKEN,
      API_TOKEN,
      LOG_FORMAT: 'json',
    };
    const child = spawn(process.execPath, plan.cmd.slice(1), { cwd: app, env, ...user, stdio: ['ignore', 'pipe', 'pipe'] });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    const lines: LogLine[] = [];
    let stderr = '';
    let buffered = '';
    child.stdout.on('data', (chunk: Buffer) => {
      const complete = (buffered + chunk.toString('utf8')).split('\n');
      buffered = complete.pop() ?? '';
      for (const line of complete) if (line.startsWith('{')) lines.push(JSON.parse(line) as LogLine);
    });
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    try {
      let url: string | undefined;
      await waitFor(() => {
        if (child.exitCode !== null) throw new Error(`service exited with ${child.exitCode}: ${stderr}`);
        url = lines.find((line) => line.msg.includes('listening on'))?.url as string | undefined;
        return url !== undefined;
      }, 'the installed service to listen', 60_000);
      const service = new ServiceClient(url as string, () => [...lines]);

      // The image's HEALTHCHECK, as Docker runs it: inside the container, with the container's env.
      const port = new URL(url as string).port;
      const health = await run(process.execPath, plan.healthcheck.slice(1), { cwd: app, env: { ...env, PORT: port }, ...user }).then(
        () => 0,
        (failure: { code: number }) => failure.code,
      );
      expect(health).toBe(0);
      expect((await fetch(`${url}/healthz`)).status).toBe(200);

      const accepted = await service.postWebhook({ type: 'RECORD', whatsapp_call_id: 'production-install-1', record_status: 'EMPTY_RECORDING' });
      expect(accepted.status).toBe(200);
      const call = await service.waitForAttachment('production-install-1', 'empty');
      expect(call.record_status).toBe('EMPTY_RECORDING');
      expect((await service.postWebhook({ type: 'RECORD', whatsapp_call_id: 'x', record_status: 'READY' }, { token: 'wrong-token-123' })).status).toBe(401);

      child.kill('SIGTERM');
      expect(await exited).toBe(0);
      expect(lines.some((line) => line.msg === 'Stopped')).toBe(true);
      // It ran with only DATA_DIR and TMPDIR writable.
      await fs.access(path.join(dataDir, 'wavoip-recordings.sqlite'));
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  }, 120_000);
});
