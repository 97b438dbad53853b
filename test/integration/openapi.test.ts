import fs from 'node:fs';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRecordingLinks } from '../../src/delivery/recording-link.ts';
import { startFakeWavoipStorage, type FakeWavoipStorage } from '../support/fake-wavoip-storage.ts';
import { API_TOKEN, NO_POLLING, makeDataDir, startInProcessService, testEnvironment, type InProcessService } from '../support/service-harness.ts';
import { OUTBOUND_SECRET, startWebhookReceiver, type WebhookReceiver } from '../support/webhook-receiver.ts';

// GET /api/openapi.json against the service itself: every route the service has is in the
// document (or deliberately hidden), and real answers of each, successes and refusals, are
// validated against the document's schema for their path, method and status. A route added
// without its answers described, or an answer that changes shape, fails here.

interface MediaType {
  schema: Record<string, unknown>;
}
interface DocumentedResponse {
  description: string;
  content?: Record<string, MediaType>;
}
interface Operation {
  responses: Record<string, DocumentedResponse>;
  security?: Record<string, string[]>[];
}
interface OpenApiDocument {
  openapi: string;
  paths: Record<string, Record<string, Operation>>;
  components: { securitySchemes: Record<string, Record<string, string>> };
}

/** Routes that are not API: the dashboard's pages and assets, and the document itself. */
const HIDDEN_ROUTES = new Set(['GET /', 'GET /calls/{id}', 'GET /devices', 'GET /sign-in', 'GET /*', 'GET /api/openapi.json']);

const ogg = fs.readFileSync(new URL('../fixtures/audio/call-pt-br-9s.ogg', import.meta.url));
const CALL_ID = 'OPENAPI-CALL';
const PENDING_CALL_ID = 'OPENAPI-PENDING';

let storage: FakeWavoipStorage;
let receiver: WebhookReceiver;
let service: InProcessService;
let document: OpenApiDocument;
const ajv = new Ajv2020({ strict: false, allErrors: true });
addFormats.default(ajv);
/** `METHOD /path` → the statuses a test saw it answer, each validated against the document. */
const driven = new Map<string, Set<number>>();

beforeAll(async () => {
  storage = await startFakeWavoipStorage();
  receiver = await startWebhookReceiver(OUTBOUND_SECRET);
  const env = testEnvironment(storage.origin, await makeDataDir(), { ...NO_POLLING, OUTBOUND_WEBHOOK_URLS: receiver.url, OUTBOUND_WEBHOOK_SECRET: OUTBOUND_SECRET });
  service = await startInProcessService(env);
  storage.setRoute(`/${CALL_ID}`, { kind: 'body', body: ogg, contentType: 'audio/ogg' });
  await service.postReady(CALL_ID, storage.url(`/${CALL_ID}`));
  await service.waitForAttachment(CALL_ID, 'attached');
  const response = await fetch(`${service.url}/api/openapi.json`);
  expect(response.status).toBe(200);
  document = (await response.json()) as OpenApiDocument;
});

afterAll(async () => {
  await service?.stop();
  await receiver?.close();
  await storage?.close();
});

/** The document's answer for a status: its own entry, else its class (`4XX`). */
function documentedResponse(method: string, path: string, status: number): DocumentedResponse | undefined {
  const operation = document.paths[path]?.[method.toLowerCase()];
  return operation?.responses[String(status)] ?? operation?.responses[`${String(status)[0]}XX`];
}

/** Checks a real answer against the document, and counts the operation as driven. */
async function conforms(response: Response, method: string, path: string): Promise<void> {
  const what = `${method} ${path} answering ${response.status}`;
  // A 5xx would match the document's `5XX` too; none of these requests may fail.
  expect(response.status, `${what}: ${await response.clone().text()}`).toBeLessThan(500);
  const documented = documentedResponse(method, path, response.status);
  expect(documented, `${what}: not in the document`).toBeDefined();
  const body = Buffer.from(await response.arrayBuffer());
  if (documented?.content === undefined) {
    expect(body.length, `${what}: the document says no body`).toBe(0);
  } else {
    const mediaType = (response.headers.get('content-type') ?? '').split(';')[0]?.trim() ?? '';
    const documentedType = Object.keys(documented.content).find((each) => each === mediaType || (each.endsWith('/*') && mediaType.startsWith(each.slice(0, -1))));
    expect(documentedType, `${what}: Content-Type ${mediaType} is not one the document names (${Object.keys(documented.content).join(', ')})`).toBeDefined();
    const schema = documented.content[documentedType as string]?.schema ?? {};
    const validate = ajv.compile(schema);
    const value = mediaType === 'application/json' ? (JSON.parse(body.toString('utf8')) as unknown) : body.toString('latin1');
    expect(validate(value), `${what}: ${ajv.errorsText(validate.errors)}\n${body.toString('utf8').slice(0, 500)}`).toBe(true);
  }
  const key = `${method} ${path}`;
  driven.set(key, (driven.get(key) ?? new Set()).add(response.status));
}

const api = (pathAndQuery: string, init: RequestInit & { token?: string } = {}) => service.api(pathAndQuery, init);
const anonymous = (pathAndQuery: string, init: RequestInit = {}) => fetch(`${service.url}${pathAndQuery}`, init);
const json = (body: unknown): RequestInit => ({ method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

describe('the document', () => {
  it('is OpenAPI 3.1, served without a token, with the bearer token and the session cookie as security schemes', () => {
    expect(document.openapi).toBe('3.1.0');
    expect(document.components.securitySchemes.bearer).toMatchObject({ type: 'http', scheme: 'bearer' });
    expect(document.components.securitySchemes.session).toMatchObject({ type: 'apiKey', in: 'cookie', name: 'wavoip_session' });
    expect(document.paths['/api/calls']?.get?.security).toEqual([{ bearer: [] }, { session: [] }]);
    expect(document.paths['/metrics']?.get?.security).toEqual([{ bearer: [] }]);
  });

  it('describes every answer it lists (a route without response schemas would show "Default Response")', () => {
    for (const [path, operations] of Object.entries(document.paths)) {
      for (const [method, operation] of Object.entries(operations)) {
        expect(Object.keys(operation.responses).length, `${method} ${path}`).toBeGreaterThan(1);
        for (const [status, response] of Object.entries(operation.responses)) {
          expect(response.description, `${method.toUpperCase()} ${path} ${status}`).not.toBe('Default Response');
        }
      }
    }
  });

  it('has schemas that refuse what the service must not answer, so validating against them means something', () => {
    const call = documentedResponse('GET', '/api/calls/{id}', 200)?.content?.['application/json']?.schema;
    const refusal = documentedResponse('GET', '/api/calls/{id}', 404)?.content?.['application/json']?.schema;
    expect(ajv.validate(call as object, { whatsapp_call_id: CALL_ID })).toBe(false);
    expect(ajv.validate(refusal as object, { error: 'x', message: 'x', statusCode: 404 })).toBe(false);
    expect(ajv.validate(refusal as object, { error: 'x', field: 'id' })).toBe(true);
  });
});

describe('real answers match the document', () => {
  it('health, metrics and the webhook', async () => {
    await conforms(await anonymous('/healthz'), 'GET', '/healthz');
    await conforms(await anonymous('/readyz'), 'GET', '/readyz');
    await conforms(await api('/metrics'), 'GET', '/metrics');
    await conforms(await anonymous('/metrics'), 'GET', '/metrics');
    await conforms(await anonymous('/webhooks/wavoip'), 'GET', '/webhooks/wavoip');
    await conforms(await service.postWebhook({ type: 'DEVICE', action: 'UPDATE', id_session: 'OPENAPI-DEVICE', phone: '5566999050312', status: 'CONNECTED' }), 'POST', '/webhooks/wavoip');
    await conforms(await service.postWebhook({ type: 'CALL' }, { token: 'wrong' }), 'POST', '/webhooks/wavoip');
    await conforms(await service.postWebhook('{not json'), 'POST', '/webhooks/wavoip');
    await conforms(await service.postWebhook({ type: 'CALL', whatsapp_call_id: 'X' }, { contentType: 'text/plain' }), 'POST', '/webhooks/wavoip');
    await conforms(await service.postWebhook({ type: 'CALL', padding: 'x'.repeat(70_000) }), 'POST', '/webhooks/wavoip');
  });

  it('calls: list, one, recording, retries', async () => {
    const id = encodeURIComponent(CALL_ID);
    await conforms(await api('/api/calls'), 'GET', '/api/calls');
    await conforms(await api('/api/calls?limit=1'), 'GET', '/api/calls');
    await conforms(await api('/api/calls?state=bogus'), 'GET', '/api/calls');
    await conforms(await api('/api/calls', { token: 'wrong-token-123' }), 'GET', '/api/calls');
    await conforms(await api(`/api/calls/${id}`), 'GET', '/api/calls/{id}');
    await conforms(await api('/api/calls/NO-SUCH-CALL'), 'GET', '/api/calls/{id}');
    const call = await service.call(CALL_ID);
    await conforms(await api(`/api/calls/${id}/recording`), 'GET', '/api/calls/{id}/recording');
    await conforms(await api(`/api/calls/${id}/recording`, { headers: { range: 'bytes=0-99' } }), 'GET', '/api/calls/{id}/recording');
    await conforms(await api(`/api/calls/${id}/recording`, { headers: { 'if-none-match': `"${call.attachment.sha256}"` } }), 'GET', '/api/calls/{id}/recording');
    await conforms(await api(`/api/calls/${id}/recording`, { headers: { range: `bytes=${ogg.length + 10}-` } }), 'GET', '/api/calls/{id}/recording');
    await conforms(await api(`/api/calls/${id}/recording?download=maybe`), 'GET', '/api/calls/{id}/recording');
    await conforms(await api('/api/calls/NO-SUCH-CALL/recording'), 'GET', '/api/calls/{id}/recording');
    await conforms(await api(`/api/calls/${id}/retry`, { method: 'POST' }), 'POST', '/api/calls/{id}/retry');
    for (const status of ['ACTIVE', 'ENDED']) {
      expect((await service.postWebhook({ type: 'CALL', whatsapp_call_id: PENDING_CALL_ID, status, direction: 'INCOMING', caller: '5511987654321', receiver: '5511933334444' })).status).toBe(200);
    }
    await service.waitForAttachment(PENDING_CALL_ID, 'pending');
    await conforms(await api(`/api/calls/${PENDING_CALL_ID}/retry`, { method: 'POST' }), 'POST', '/api/calls/{id}/retry');
    await conforms(await api('/api/calls/NO-SUCH-CALL/retry', { method: 'POST' }), 'POST', '/api/calls/{id}/retry');
    await conforms(await api('/api/calls/retry?state=failed', { method: 'POST' }), 'POST', '/api/calls/retry');
    await conforms(await api('/api/calls/retry', { method: 'POST' }), 'POST', '/api/calls/retry');
  });

  it('the live stream', async () => {
    const aborter = new AbortController();
    const response = await api('/api/live', { signal: aborter.signal });
    expect(response.status).toBe(200);
    const mediaType = response.headers.get('content-type')?.split(';')[0];
    expect(Object.keys(documentedResponse('GET', '/api/live', 200)?.content ?? {})).toEqual([mediaType]);
    const reader = (response.body as ReadableStream<Uint8Array>).getReader();
    expect(new TextDecoder().decode((await reader.read()).value)).toMatch(/^retry: \d+\n\n/);
    aborter.abort();
    driven.set('GET /api/live', new Set([200]));
    await conforms(await api('/api/live', { token: 'wrong-token-123' }), 'GET', '/api/live');
  });

  it('devices and the summary', async () => {
    await conforms(await api('/api/devices'), 'GET', '/api/devices');
    await conforms(await api('/api/devices?cursor=%00'), 'GET', '/api/devices');
    await conforms(await api('/api/devices/OPENAPI-DEVICE'), 'GET', '/api/devices/{id}');
    await conforms(await api('/api/devices/NO-SUCH-DEVICE'), 'GET', '/api/devices/{id}');
    await conforms(await api('/api/summary'), 'GET', '/api/summary');
    await conforms(await api('/api/summary', { token: 'wrong-token-123' }), 'GET', '/api/summary');
  });

  it('webhook tokens', async () => {
    const created = await api('/api/webhook-tokens', json({ label: 'openapi-group' }));
    const { id } = (await created.clone().json()) as { id: string };
    await conforms(created, 'POST', '/api/webhook-tokens');
    await conforms(await api('/api/webhook-tokens', json({ label: 'no spaces allowed' })), 'POST', '/api/webhook-tokens');
    await conforms(await api('/api/webhook-tokens', json({})), 'POST', '/api/webhook-tokens');
    await conforms(await api('/api/webhook-tokens'), 'GET', '/api/webhook-tokens');
    await conforms(await api('/api/webhook-tokens', { token: 'wrong-token-123' }), 'GET', '/api/webhook-tokens');
    await conforms(await api(`/api/webhook-tokens/${id}`, { method: 'DELETE' }), 'DELETE', '/api/webhook-tokens/{id}');
    await conforms(await api('/api/webhook-tokens/no-such-token', { method: 'DELETE' }), 'DELETE', '/api/webhook-tokens/{id}');
  });

  it('deliveries, destinations and recording links', async () => {
    const destinations = await api('/api/destinations');
    const [destination] = ((await destinations.clone().json()) as { destinations: { name: string }[] }).destinations;
    await conforms(destinations, 'GET', '/api/destinations');
    await conforms(await api('/api/destinations', { token: 'wrong-token-123' }), 'GET', '/api/destinations');
    await conforms(await api(`/api/destinations/reset?destination=${encodeURIComponent(destination?.name ?? '')}`, { method: 'POST' }), 'POST', '/api/destinations/reset');
    await conforms(await api('/api/destinations/reset?destination=nowhere', { method: 'POST' }), 'POST', '/api/destinations/reset');
    await conforms(await api(`/api/calls/${encodeURIComponent(CALL_ID)}/redeliver`, { method: 'POST' }), 'POST', '/api/calls/{id}/redeliver');
    await conforms(await api('/api/calls/NO-SUCH-CALL/redeliver', { method: 'POST' }), 'POST', '/api/calls/{id}/redeliver');
    await conforms(await api('/api/deliveries/backfill?since=2024-05-01', { method: 'POST' }), 'POST', '/api/deliveries/backfill');
    await conforms(await api('/api/deliveries/backfill?since=yesterday', { method: 'POST' }), 'POST', '/api/deliveries/backfill');

    const links = createRecordingLinks({ secret: OUTBOUND_SECRET, baseUrl: () => service.url, ttlMs: 3_600_000 });
    const link = links.linkFor(CALL_ID, Date.now()).slice(service.url.length);
    await conforms(await anonymous(link), 'GET', '/recordings/{token}');
    await conforms(await anonymous(link, { headers: { range: 'bytes=10-19' } }), 'GET', '/recordings/{token}');
    await conforms(await anonymous(`${link.slice(0, -4)}AAAA`), 'GET', '/recordings/{token}');
    await conforms(await anonymous(links.linkFor('NO-SUCH-CALL', Date.now()).slice(service.url.length)), 'GET', '/recordings/{token}');
  });

  it('dashboard sessions', async () => {
    await conforms(await anonymous('/api/session', json({ password: 'wrong password' })), 'POST', '/api/session');
    await conforms(await anonymous('/api/session', json({})), 'POST', '/api/session');
    const signIn = await anonymous('/api/session', json({ password: API_TOKEN }));
    const cookie = /wavoip_session=([^;]+)/.exec(signIn.headers.get('set-cookie') ?? '')?.[1] as string;
    const { csrf_token: csrfToken } = (await signIn.clone().json()) as { csrf_token: string };
    await conforms(signIn, 'POST', '/api/session');
    const withCookie = { cookie: `wavoip_session=${cookie}` };
    await conforms(await anonymous('/api/session', { headers: withCookie }), 'GET', '/api/session');
    await conforms(await anonymous('/api/session'), 'GET', '/api/session');
    await conforms(await anonymous('/api/calls/retry?state=failed', { method: 'POST', headers: withCookie }), 'POST', '/api/calls/retry');
    await conforms(await anonymous('/api/session', { method: 'DELETE', headers: withCookie }), 'DELETE', '/api/session');
    await conforms(await anonymous('/api/session', { method: 'DELETE', headers: { ...withCookie, 'x-csrf-token': csrfToken } }), 'DELETE', '/api/session');
    await conforms(await anonymous('/api/session', { method: 'DELETE', headers: withCookie }), 'DELETE', '/api/session');
  });

  it('every route of the service is in the document or deliberately hidden, and each documented one was driven to a success and a refusal', () => {
    const routes = listRoutes(service.service.app.printRoutes({ commonPrefix: false }));
    const documented = Object.entries(document.paths).flatMap(([path, operations]) => Object.keys(operations).map((method) => `${method.toUpperCase()} ${path}`));
    expect(routes.filter((route) => !HIDDEN_ROUTES.has(route)).sort()).toEqual([...documented].sort());
    expect(routes).toEqual(expect.arrayContaining([...HIDDEN_ROUTES]));
    for (const operation of documented) {
      const statuses = [...(driven.get(operation) ?? [])];
      const [method, path] = operation.split(' ') as [string, string];
      const refuses = Object.keys(document.paths[path]?.[method.toLowerCase()]?.responses ?? {}).some((status) => status.startsWith('4'));
      expect(statuses.some((status) => status < 300), `${operation}: a success`).toBe(true);
      // Health checks and the webhook's GET refuse nothing; only a failure (5xx) would differ.
      if (refuses) expect(statuses.some((status) => status >= 400), `${operation}: a refusal`).toBe(true);
    }
  });
});

/**
 * `METHOD /path` (HEAD left out, parameters as `{name}`) of every route in Fastify's route tree:
 * each line is `<indent>├── <segment> (<METHODS>)`, four characters of indent per level.
 */
function listRoutes(tree: string): string[] {
  const routes: string[] = [];
  const prefixes: string[] = [];
  for (const line of tree.split('\n')) {
    const match = /^((?:│ {3}| {4})*)(?:├── |└── )(.+?)(?: \(([A-Z, ]+)\))?$/.exec(line);
    if (match === null) continue;
    const depth = (match[1] as string).length / 4;
    const path = `${prefixes[depth - 1] ?? ''}${match[2]}`;
    prefixes[depth] = path;
    for (const method of (match[3] ?? '').split(', ').filter((each) => each !== '' && each !== 'HEAD')) {
      const documentPath = (path.startsWith('/') ? path : `/${path}`).replace(/:(\w+)/g, '{$1}');
      routes.push(`${method} ${documentPath}`);
    }
  }
  return routes;
}
