import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { buildRecordingUrl } from '../../src/calls/recording.ts';
import { CONFIG_VARIABLES, loadConfig, type Config } from '../../src/config/config.ts';
import { configError } from '../support/config-error.ts';

const DEFAULT_TEMPLATE = 'https://storage.wavoip.com/{whatsapp_call_id}';


describe('outbound delivery settings', () => {
  it('reads OUTBOUND_WEBHOOK_URLS as one destination per URL', () => {
    const config = loadConfig({ OUTBOUND_WEBHOOK_URLS: ' https://a.example/hook , http://10.0.0.5:8080/in?key=x ' });
    expect(config.outboundWebhookUrls).toEqual(['https://a.example/hook', 'http://10.0.0.5:8080/in?key=x']);
  });

  it.each(['ftp://a.example/hook', 'a.example/hook', 'https://a.example/x,https://a.example/x'])('refuses OUTBOUND_WEBHOOK_URLS=%s, naming it', (value) => {
    expect(configError({ OUTBOUND_WEBHOOK_URLS: value }).message).toMatch(/OUTBOUND_WEBHOOK_URLS/);
  });

  it('takes a Standard Webhooks secret and refuses anything else, naming the variable', () => {
    const secret = `whsec_${Buffer.alloc(32, 7).toString('base64')}`;
    expect(loadConfig({ OUTBOUND_WEBHOOK_SECRET: secret }).outboundWebhookSecret).toBe(secret);
    for (const bad of ['secret-of-mine', 'whsec_c2hvcnQ=', `whsec_${Buffer.alloc(32).toString('base64')}!`]) {
      expect(configError({ OUTBOUND_WEBHOOK_SECRET: bad }).message).toMatch(/OUTBOUND_WEBHOOK_SECRET: must be whsec_/);
    }
  });

  it('reads DELIVERY_CONCURRENCY, DELIVERY_MAX_WAIT and RECORDING_LINK_TTL', () => {
    const config = loadConfig({ DELIVERY_CONCURRENCY: '12', DELIVERY_MAX_WAIT: '12h', RECORDING_LINK_TTL: '1d' });
    expect([config.deliveryConcurrency, config.deliveryMaxWaitMs, config.recordingLinkTtlMs]).toEqual([12, 12 * 3_600_000, 86_400_000]);
    expect(configError({ DELIVERY_CONCURRENCY: '0' }).message).toMatch(/DELIVERY_CONCURRENCY/);
    expect(configError({ DELIVERY_MAX_WAIT: 'forever' }).message).toMatch(/DELIVERY_MAX_WAIT/);
  });
});

describe('dashboard settings', () => {
  it('reads DASHBOARD, DASHBOARD_PASSWORD and DASHBOARD_SESSION_TTL', () => {
    const config = loadConfig({ DASHBOARD: 'false', DASHBOARD_PASSWORD: ' a-long-passphrase ', DASHBOARD_SESSION_TTL: '8h' });
    expect(config.dashboard).toEqual({ enabled: false, password: 'a-long-passphrase', sessionTtlMs: 8 * 3_600_000 });
  });

  it('refuses a short DASHBOARD_PASSWORD and a DASHBOARD that is not a boolean, naming them', () => {
    expect(configError({ DASHBOARD_PASSWORD: 'short' }).message).toMatch(/DASHBOARD_PASSWORD: must be at least 12 characters/);
    expect(configError({ DASHBOARD: 'yes' }).message).toMatch(/DASHBOARD:/);
  });
});

describe('loadConfig defaults', () => {
  it('gives exactly the documented defaults for an empty environment', () => {
    const dataDir = path.resolve('./data');
    expect(loadConfig({})).toEqual<Config>({
      port: 3000,
      host: '0.0.0.0',
      dataDir,
      database: { dialect: 'sqlite', filename: path.join(dataDir, 'wavoip-recordings.sqlite') },
      migrateOnStart: true,
      recordingsStorage: { kind: 'local', dir: path.join(dataDir, 'recordings') },
      webhookToken: undefined,
      apiToken: undefined,
      publicUrl: undefined,
      recordingUrlAllowlist: [{ kind: 'host', host: 'storage.wavoip.com' }],
      recordingMaxBytes: 512 * 1024 * 1024,
      recordingUrlTemplate: DEFAULT_TEMPLATE,
      pollInitialDelayMs: 30_000,
      pollMaxDelayMs: 30 * 60_000,
      pollMaxWaitMs: 4 * 3_600_000,
      downloadConcurrency: 8,
      jobLeaseMs: 60_000,
      eventRetentionMs: 30 * 86_400_000,
      recordingRetentionMs: undefined,
      webhookSilenceWarningMs: 24 * 3_600_000,
      outboundWebhookUrls: [],
      outboundWebhookSecret: undefined,
      recordingLinkTtlMs: 7 * 86_400_000,
      deliveryConcurrency: 4,
      deliveryMaxWaitMs: 3 * 86_400_000,
      chatwoot: null,
      dashboard: { enabled: true, password: undefined, sessionTtlMs: 12 * 3_600_000 },
      trustProxy: [],
      authFailureLimit: 10,
      shutdownGraceMs: 5_000,
      logFormat: 'pretty',
      logLevel: 'info',
    });
  });

  it('keeps the SQLite file inside DATA_DIR, resolved to an absolute path', () => {
    const config = loadConfig({ DATA_DIR: 'var/wavoip' });
    expect(config.dataDir).toBe(path.resolve('var/wavoip'));
    expect(path.isAbsolute(config.dataDir)).toBe(true);
    expect(config.database.dialect === 'sqlite' && path.dirname(config.database.filename)).toBe(config.dataDir);
    expect(loadConfig({ DATA_DIR: '/srv/rec' }).database).toEqual({ dialect: 'sqlite', filename: '/srv/rec/wavoip-recordings.sqlite' });
  });

  it('returns a frozen object and ignores unrelated variables', () => {
    const config = loadConfig({ HOME: '/root', NODE_ENV: 'production', PATH: '/bin' });
    expect(Object.isFrozen(config)).toBe(true);
    expect(config.port).toBe(3000);
  });
});

describe('loadConfig reads every variable', () => {
  it.each<[string, Record<string, string>, Partial<Config>]>([
    ['PORT', { PORT: '8080' }, { port: 8080 }],
    ['PORT 0 (any free port)', { PORT: '0' }, { port: 0 }],
    ['PORT 65535', { PORT: '65535' }, { port: 65535 }],
    ['HOST', { HOST: '127.0.0.1' }, { host: '127.0.0.1' }],
    ['WEBHOOK_TOKEN', { WEBHOOK_TOKEN: 'abcdefgh' }, { webhookToken: 'abcdefgh' }],
    ['WEBHOOK_TOKEN trimmed', { WEBHOOK_TOKEN: '  s3cret-token  ' }, { webhookToken: 's3cret-token' }],
    ['WEBHOOK_TOKEN empty → unset', { WEBHOOK_TOKEN: '' }, { webhookToken: undefined }],
    ['WEBHOOK_TOKEN blank → unset', { WEBHOOK_TOKEN: '   ' }, { webhookToken: undefined }],
    ['WEBHOOK_TOKEN none → no token at all', { WEBHOOK_TOKEN: 'none' }, { webhookToken: null }],
    ['PUBLIC_URL', { PUBLIC_URL: 'https://recordings.example.com' }, { publicUrl: 'https://recordings.example.com' }],
    ['PUBLIC_URL with a port and a path, trailing slash dropped', { PUBLIC_URL: 'http://example.com:8443/wavoip/' }, { publicUrl: 'http://example.com:8443/wavoip' }],
    ['API_TOKEN', { API_TOKEN: 'api-token-123' }, { apiToken: 'api-token-123' }],
    ['API_TOKEN empty → unset', { API_TOKEN: '' }, { apiToken: undefined }],
    ['RECORDING_URL_ALLOWLIST', { RECORDING_URL_ALLOWLIST: 'storage.wavoip.com, *.wavoip.com,127.0.0.1:9000' }, {
      recordingUrlAllowlist: [
        { kind: 'host', host: 'storage.wavoip.com' },
        { kind: 'subdomains', suffix: '.wavoip.com' },
        { kind: 'host-port', host: '127.0.0.1', port: 9000 },
      ],
    }],
    ['RECORDING_MAX_BYTES in bytes', { RECORDING_MAX_BYTES: '1048576' }, { recordingMaxBytes: 1_048_576 }],
    ['RECORDING_MAX_BYTES in KiB', { RECORDING_MAX_BYTES: '64KiB' }, { recordingMaxBytes: 65_536 }],
    ['RECORDING_MAX_BYTES in GiB', { RECORDING_MAX_BYTES: '2GiB' }, { recordingMaxBytes: 2 * 1024 ** 3 }],
    ['WAVOIP_RECORDING_URL_TEMPLATE', { WAVOIP_RECORDING_URL_TEMPLATE: 'http://127.0.0.1:9000/rec/{whatsapp_call_id}.ogg', RECORDING_URL_ALLOWLIST: '127.0.0.1:9000' },
      { recordingUrlTemplate: 'http://127.0.0.1:9000/rec/{whatsapp_call_id}.ogg' }],
    ['POLL_INITIAL_DELAY', { POLL_INITIAL_DELAY: '500ms' }, { pollInitialDelayMs: 500 }],
    ['POLL_MAX_DELAY', { POLL_MAX_DELAY: '2m' }, { pollMaxDelayMs: 120_000 }],
    ['POLL_MAX_WAIT', { POLL_MAX_WAIT: '1d' }, { pollMaxWaitMs: 86_400_000 }],
    ['POLL_MAX_WAIT short, for tests', { POLL_MAX_WAIT: '3s', POLL_INITIAL_DELAY: '100ms' }, { pollMaxWaitMs: 3_000 }],
    ['DOWNLOAD_CONCURRENCY', { DOWNLOAD_CONCURRENCY: '16' }, { downloadConcurrency: 16 }],
    ['JOB_LEASE', { JOB_LEASE: '5m' }, { jobLeaseMs: 300_000 }],
    ['EVENT_RETENTION', { EVENT_RETENTION: '7d' }, { eventRetentionMs: 7 * 86_400_000 }],
    ['RECORDING_RETENTION', { RECORDING_RETENTION: '365d' }, { recordingRetentionMs: 365 * 86_400_000 }],
    ['RECORDING_RETENTION empty → kept for ever', { RECORDING_RETENTION: '' }, { recordingRetentionMs: undefined }],
    ['WEBHOOK_SILENCE_WARNING', { WEBHOOK_SILENCE_WARNING: '2h' }, { webhookSilenceWarningMs: 7_200_000 }],
    ['AUTH_FAILURE_LIMIT', { AUTH_FAILURE_LIMIT: '50' }, { authFailureLimit: 50 }],
    ['SHUTDOWN_GRACE', { SHUTDOWN_GRACE: '25s' }, { shutdownGraceMs: 25_000 }],
    ['TRUST_PROXY addresses', { TRUST_PROXY: '10.0.0.0/8, 127.0.0.1,::1' }, { trustProxy: ['10.0.0.0/8', '127.0.0.1', '::1'] }],
    ['LOG_FORMAT', { LOG_FORMAT: 'json' }, { logFormat: 'json' }],
    ['LOG_LEVEL debug', { LOG_LEVEL: 'debug' }, { logLevel: 'debug' }],
    ['LOG_LEVEL silent', { LOG_LEVEL: 'silent' }, { logLevel: 'silent' }],
  ])('%s', (_name, env, expected) => {
    expect(loadConfig(env)).toMatchObject(expected);
  });
});

describe('loadConfig refuses bad variables, naming them', () => {
  it.each<[string, string]>([
    ['PORT', 'abc'],
    ['PORT', '65536'],
    ['PORT', '-1'],
    ['PORT', '3000.5'],
    ['PORT', 'http'],
    ['WEBHOOK_TOKEN', 'short'],
    ['API_TOKEN', '1234567'],
    ['WEBHOOK_TOKEN', 'None'],
    ['PUBLIC_URL', 'recordings.example.com'],
    ['OUTBOUND_WEBHOOK_URLS', 'https://user:pass%zz@crm.example.com/hook'],
    ['PUBLIC_URL', 'ftp://recordings.example.com'],
    ['PUBLIC_URL', 'https://recordings.example.com/?token=x'],
    ['PUBLIC_URL', 'https://recordings.example.com/#top'],
    ['RECORDING_URL_ALLOWLIST', 'http://storage.wavoip.com'],
    ['RECORDING_URL_ALLOWLIST', 'a*b.wavoip.com'],
    ['RECORDING_URL_ALLOWLIST', '10.0.0.5'],
    ['RECORDING_URL_ALLOWLIST', 'minio:99999'],
    ['RECORDING_URL_ALLOWLIST', ' , ,'],
    ['RECORDING_MAX_BYTES', '0'],
    ['RECORDING_MAX_BYTES', '-1'],
    ['RECORDING_MAX_BYTES', '1.5MiB'],
    ['RECORDING_MAX_BYTES', '512MB'],
    ['RECORDING_MAX_BYTES', 'big'],
    ['WAVOIP_RECORDING_URL_TEMPLATE', 'https://storage.wavoip.com/'],
    ['WAVOIP_RECORDING_URL_TEMPLATE', '{whatsapp_call_id}'],
    ['WAVOIP_RECORDING_URL_TEMPLATE', 'storage.wavoip.com/{whatsapp_call_id}'],
    ['POLL_INITIAL_DELAY', '30'],
    ['POLL_INITIAL_DELAY', '0s'],
    ['POLL_INITIAL_DELAY', '5 m'],
    ['POLL_INITIAL_DELAY', '-1s'],
    ['POLL_INITIAL_DELAY', '1w'],
    ['POLL_MAX_DELAY', '30'],
    ['POLL_MAX_DELAY', '0ms'],
    ['POLL_MAX_WAIT', 'forever'],
    ['POLL_MAX_WAIT', '4 hours'],
    ['DOWNLOAD_CONCURRENCY', '0'],
    ['DOWNLOAD_CONCURRENCY', '-2'],
    ['DOWNLOAD_CONCURRENCY', '1.5'],
    ['DOWNLOAD_CONCURRENCY', 'many'],
    ['JOB_LEASE', '60'],
    ['JOB_LEASE', '0s'],
    ['EVENT_RETENTION', '0d'],
    ['RECORDING_RETENTION', '0s'],
    ['RECORDING_RETENTION', 'never'],
    ['WEBHOOK_SILENCE_WARNING', '1 day'],
    ['AUTH_FAILURE_LIMIT', '0'],
    ['SHUTDOWN_GRACE', '0s'],
    ['TRUST_PROXY', 'true'],
    ['TRUST_PROXY', '1'],
    ['TRUST_PROXY', '10.0.0.0/33'],
    ['TRUST_PROXY', 'proxy.local'],
    ['LOG_FORMAT', 'xml'],
    ['LOG_LEVEL', 'verbose'],
    ['JOB_LEASE', '500ms'],
  ])('%s=%j', (variable, value) => {
    const error = configError({ [variable]: value });
    expect(error.message).toContain(variable);
    expect(error.message).toMatch(/^Invalid configuration/);
  });

  it.each([['WEBHOOK_TOKEN', 'tiny'], ['API_TOKEN', 'pass123']])('does not echo the secret in %s', (variable, value) => {
    expect(configError({ [variable]: value }).message).not.toContain(value);
  });

  it.each([
    ['WEBHOOK_TOKEN', 'change-me-to-a-long-random-string'],
    ['API_TOKEN', 'change-me-to-a-long-random-string'],
    ['WEBHOOK_TOKEN', 'CHANGEME-please-1234'],
  ])("refuses .env.example's placeholder in %s, saying what to do", (variable, value) => {
    expect(configError({ [variable]: value }).message).toMatch(
      new RegExp(`${variable}: is the placeholder from \\.env\\.example: remove the line \\(the service then generates a token into DATA_DIR\\) or set a random one`),
    );
  });

  it('ships an .env.example that loads as it is: no placeholder secret is left set', () => {
    const example = fs.readFileSync(new URL('../../.env.example', import.meta.url), 'utf8');
    const env = Object.fromEntries(
      example
        .split('\n')
        .map((line) => line.replace(/#.*/, '').trim())
        .filter((line) => line.includes('='))
        .map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)] as const),
    );
    expect(Object.keys(env).length).toBeGreaterThan(10);
    expect(() => loadConfig(env)).not.toThrow();
  });

  it("documents every variable in the README's configuration table, and nothing else there", () => {
    const readme = fs.readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
    const table = readme.slice(readme.indexOf('## Configuration'), readme.indexOf('\n## ', readme.indexOf('## Configuration') + 1));
    const documented = [...table.matchAll(/^\| `([A-Z0-9_]+)` \|/gm)].map((match) => match[1]);
    expect([...documented].sort()).toEqual([...CONFIG_VARIABLES].sort());
  });

  it('keeps .env, which holds secrets, out of git', () => {
    const repo = fileURLToPath(new URL('../..', import.meta.url));
    // Exit status 0: ignored; 1: it would be committed.
    expect(() => execFileSync('git', ['check-ignore', '--quiet', '.env'], { cwd: repo })).not.toThrow();
  });

  it.each<[string, Record<string, string>, RegExp]>([
    ['a first poll later than the longest wait', { POLL_INITIAL_DELAY: '1h', POLL_MAX_DELAY: '30m' }, /POLL_INITIAL_DELAY: must not be longer than POLL_MAX_DELAY/],
    ['a first poll after the give-up', { POLL_INITIAL_DELAY: '5m', POLL_MAX_WAIT: '5m' }, /POLL_INITIAL_DELAY: must be shorter than POLL_MAX_WAIT/],
    ['a template host not on the allow-list', { WAVOIP_RECORDING_URL_TEMPLATE: 'https://cdn.example.com/{whatsapp_call_id}' }, /WAVOIP_RECORDING_URL_TEMPLATE: is refused by RECORDING_URL_ALLOWLIST/],
    ['a template that is not http(s)', { WAVOIP_RECORDING_URL_TEMPLATE: 'ftp://storage.wavoip.com/{whatsapp_call_id}' }, /WAVOIP_RECORDING_URL_TEMPLATE: is refused/],
    ['a private template host without its exact host:port', { WAVOIP_RECORDING_URL_TEMPLATE: 'http://10.0.0.5/{whatsapp_call_id}', RECORDING_URL_ALLOWLIST: '10.0.0.5:8080' }, /WAVOIP_RECORDING_URL_TEMPLATE/],
  ])('refuses settings that contradict each other: %s', (_name, env, message) => {
    expect(configError(env).message).toMatch(message);
  });

  it('names every bad variable at once', () => {
    const message = configError({ PORT: 'x', POLL_INITIAL_DELAY: '30', LOG_LEVEL: 'loud' }).message;
    for (const variable of ['PORT', 'POLL_INITIAL_DELAY', 'LOG_LEVEL']) expect(message).toContain(variable);
    expect(message).not.toContain('HOST');
  });

  it('reads a variable set to an empty or blank string as unset: the default applies', () => {
    const blank = Object.fromEntries(
      ['PORT', 'HOST', 'DATA_DIR', 'RECORDING_MAX_BYTES', 'WAVOIP_RECORDING_URL_TEMPLATE', 'POLL_INITIAL_DELAY', 'DOWNLOAD_CONCURRENCY', 'LOG_FORMAT', 'LOG_LEVEL'].map(
        (variable, index) => [variable, index % 2 === 0 ? '' : '  '],
      ),
    );
    expect(loadConfig(blank)).toEqual(loadConfig({}));
  });

  it('reads an empty PORT as unset (the default 3000), not as port 0', () => {
    expect(loadConfig({ PORT: '' }).port).toBe(3000);
    expect(loadConfig({ PORT: ' ' }).port).toBe(3000);
  });
});

describe('loadConfig DATABASE_URL', () => {
  it.each<[string, string]>([
    ['sqlite:./tmp/calls.db', path.resolve('./tmp/calls.db')],
    ['sqlite:calls.db', path.resolve('calls.db')],
    ['sqlite:/var/lib/wavoip/calls.db', '/var/lib/wavoip/calls.db'],
    ['sqlite:///var/lib/wavoip/calls.db', '/var/lib/wavoip/calls.db'],
    ['sqlite://calls.db', path.resolve('calls.db')],
    ['  sqlite:/tmp/a.db  ', '/tmp/a.db'],
  ])('accepts %j', (url, filename) => {
    expect(loadConfig({ DATABASE_URL: url }).database).toEqual({ dialect: 'sqlite', filename });
  });

  it.each(['', '   '])('treats %j as unset', (url) => {
    expect(loadConfig({ DATABASE_URL: url, DATA_DIR: '/srv/d' }).database).toEqual({
      dialect: 'sqlite',
      filename: '/srv/d/wavoip-recordings.sqlite',
    });
  });

  it.each([
    ['postgres://wavoip:s3cretPass@db.internal:5432/wavoip', 'postgres://wavoip:%5Bredacted%5D@db.internal:5432/wavoip'],
    ['postgresql://wavoip:s3cretPass@db.internal/wavoip', 'postgresql://wavoip:%5Bredacted%5D@db.internal/wavoip'],
    ['postgres://127.0.0.1/wavoip', 'postgres://127.0.0.1/wavoip'],
    ['postgres://wavoip@db/wavoip?password=s3cretPass&sslmode=require', 'postgres://wavoip@db/wavoip'],
  ])('selects PostgreSQL for %s, with a redacted form for the log', (url, redactedUrl) => {
    expect(loadConfig({ DATABASE_URL: url }).database).toEqual({ dialect: 'postgres', url, redactedUrl, poolSize: 10 });
    expect(loadConfig({ DATABASE_URL: url, DATABASE_POOL_SIZE: '40' }).database).toMatchObject({ poolSize: 40 });
  });

  it('does not echo the password of a PostgreSQL URL it refuses', () => {
    const message = configError({ DATABASE_URL: 'postgres://wavoip:s3cretPass@db.internal:5432/wavoip', DATABASE_POOL_SIZE: '0' }).message;
    expect(message).toContain('DATABASE_POOL_SIZE');
    expect(message).not.toContain('s3cretPass');
  });

  it.each(['mysql://root@localhost/db', 'file:calls.db', 'sqlite:', 'calls.db'])('refuses %j', (url) => {
    expect(configError({ DATABASE_URL: url }).message).toContain('DATABASE_URL');
  });

  it.each([['true', true], ['false', false]] as const)('reads MIGRATE_ON_START=%s', (text, migrateOnStart) => {
    expect(loadConfig({ MIGRATE_ON_START: text }).migrateOnStart).toBe(migrateOnStart);
  });

  it('refuses MIGRATE_ON_START=no', () => {
    expect(configError({ MIGRATE_ON_START: 'no' }).message).toContain('MIGRATE_ON_START');
  });
});

describe('loadConfig RECORDINGS_STORAGE', () => {
  it.each<[Record<string, string>, unknown]>([
    [{ RECORDINGS_STORAGE: 's3://recordings' }, { kind: 's3', bucket: 'recordings', prefix: '', endpoint: undefined, region: 'us-east-1', forcePathStyle: false }],
    [{ RECORDINGS_STORAGE: 's3://my.bucket/calls/2026/' }, { kind: 's3', bucket: 'my.bucket', prefix: 'calls/2026/', endpoint: undefined, region: 'us-east-1', forcePathStyle: false }],
    [
      { RECORDINGS_STORAGE: 's3://rec/x', S3_ENDPOINT: 'http://127.0.0.1:9000/', S3_REGION: 'sa-east-1', S3_FORCE_PATH_STYLE: 'true' },
      { kind: 's3', bucket: 'rec', prefix: 'x/', endpoint: 'http://127.0.0.1:9000', region: 'sa-east-1', forcePathStyle: true },
    ],
    [{ RECORDINGS_STORAGE: 's3://rec', AWS_REGION: 'eu-west-1' }, { kind: 's3', bucket: 'rec', prefix: '', endpoint: undefined, region: 'eu-west-1', forcePathStyle: false }],
    [{ RECORDINGS_STORAGE: '/mnt/recordings' }, { kind: 'local', dir: '/mnt/recordings' }],
  ])('reads %j', (env, expected) => {
    expect(loadConfig(env).recordingsStorage).toEqual(expected);
  });

  it.each<[Record<string, string>, string]>([
    [{ RECORDINGS_STORAGE: 's3://' }, 'RECORDINGS_STORAGE'],
    [{ RECORDINGS_STORAGE: 's3://Bad_Bucket' }, 'RECORDINGS_STORAGE'],
    [{ RECORDINGS_STORAGE: 'gs://bucket' }, 'RECORDINGS_STORAGE'],
    [{ S3_ENDPOINT: 'minio:9000' }, 'S3_ENDPOINT'],
    [{ S3_ENDPOINT: 'http://minio:9000/path' }, 'S3_ENDPOINT'],
    [{ S3_FORCE_PATH_STYLE: 'yes' }, 'S3_FORCE_PATH_STYLE'],
  ])('refuses %j, naming %s', (env, variable) => {
    expect(configError(env).message).toContain(variable);
  });
});

describe('buildRecordingUrl', () => {
  it.each<[string, string]>([
    ['123456', 'https://storage.wavoip.com/123456'],
    ['test123', 'https://storage.wavoip.com/test123'],
    ['3528B6CDB8D38FDA799C4AEA28E9BDC5', 'https://storage.wavoip.com/3528B6CDB8D38FDA799C4AEA28E9BDC5'],
    ['a/b', 'https://storage.wavoip.com/a%2Fb'],
    ['../../admin', 'https://storage.wavoip.com/..%2F..%2Fadmin'],
    ['a b?c#d', 'https://storage.wavoip.com/a%20b%3Fc%23d'],
    ['x@evil.com', 'https://storage.wavoip.com/x%40evil.com'],
    ['ação', 'https://storage.wavoip.com/a%C3%A7%C3%A3o'],
  ])('builds the default URL for %j', (callId, url) => {
    expect(buildRecordingUrl(DEFAULT_TEMPLATE, callId)).toBe(url);
  });

  it('fills a custom template', () => {
    expect(buildRecordingUrl('http://127.0.0.1:9000/rec/{whatsapp_call_id}.ogg?v=1', '42')).toBe('http://127.0.0.1:9000/rec/42.ogg?v=1');
  });

  it('fills every placeholder of a template', () => {
    expect(buildRecordingUrl('https://h.example/{whatsapp_call_id}/{whatsapp_call_id}.ogg', 'abc')).toBe('https://h.example/abc/abc.ogg');
  });

  it('keeps any call id inside the path of the storage host', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 128 }), (callId) => {
        const url = new URL(buildRecordingUrl(DEFAULT_TEMPLATE, callId));
        expect(url.origin).toBe('https://storage.wavoip.com');
        expect(url.search).toBe('');
        expect(url.hash).toBe('');
        expect(decodeURIComponent(url.pathname.slice(1))).toBe(callId);
      }),
      { numRuns: 1000 },
    );
  });
});
