import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeWavoipStorage, type FakeWavoipStorage } from '../support/fake-wavoip-storage.ts';
import { makeDataDir, NO_POLLING, startInProcessService, testEnvironment, waitFor, WEBHOOK_TOKEN, type InProcessService } from '../support/service-harness.ts';
import { openTestDatabase, testDialect, waitForEventsApplied } from '../support/test-database.ts';

interface CreatedToken {
  id: string;
  label: string;
  token: string;
  created_at: string;
  revoked_at: string | null;
  webhook_url: string | null;
}

let storage: FakeWavoipStorage;
let env: Record<string, string>;
let service: InProcessService;

beforeAll(async () => {
  storage = await startFakeWavoipStorage();
  env = testEnvironment(storage.origin, await makeDataDir(), { ...NO_POLLING, PUBLIC_URL: 'https://recordings.example.com' });
  service = await startInProcessService(env);
});
afterAll(async () => {
  await service?.stop();
  await storage?.close();
});

async function createToken(on: InProcessService, label: string): Promise<CreatedToken> {
  const response = await on.api('/api/webhook-tokens', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ label }) });
  expect(response.status).toBe(201);
  return (await response.json()) as CreatedToken;
}

const call = (callId: string, device: string) => ({
  type: 'CALL',
  action: 'CREATE',
  whatsapp_call_id: callId,
  id_session: device,
  caller: '5511911112222',
  receiver: '5511933334444',
  status: 'INCOMING_RING',
  direction: 'INCOMING',
});

async function listCallIds(query: string): Promise<string[]> {
  const response = await service.api(`/api/calls${query}`);
  expect(response.status).toBe(200);
  return ((await response.json()) as { calls: { whatsapp_call_id: string }[] }).calls.map((item) => item.whatsapp_call_id);
}

describe('webhook tokens of device groups', () => {
  // Every test here starts from this: the Acme group, a call and a device of theirs, and a call
  // that came with the operator's own token.
  let acme: CreatedToken;
  beforeAll(async () => {
    acme = await createToken(service, 'Acme Corp.');
    expect((await service.postWebhook(call('TENANT-ACME-1', 'dev-acme'), { token: acme.token })).status).toBe(200);
    expect((await service.postWebhook({ type: 'DEVICE', action: 'UPDATE', id_session: 'dev-acme', phone: '5511911112222', status: 'open' }, { token: acme.token })).status).toBe(200);
    expect((await service.postWebhook(call('TENANT-NONE-1', 'dev-shared'))).status).toBe(200);
    await waitForEventsApplied(env);
  });

  it('creates a token for a label, shown once with its panel URL, and lists it without its value', async () => {
    expect(acme).toMatchObject({ label: 'Acme Corp.', revoked_at: null });
    expect(acme.token).toMatch(/^[\w-]{43}$/);
    expect(acme.webhook_url).toBe(`https://recordings.example.com/webhooks/wavoip?token=${acme.token}`);

    const listed = (await (await service.api('/api/webhook-tokens')).json()) as { webhook_tokens: Record<string, unknown>[] };
    expect(listed.webhook_tokens).toContainEqual({ id: acme.id, label: 'Acme Corp.', created_at: acme.created_at, revoked_at: null });
    expect(JSON.stringify(listed)).not.toContain(acme.token);
  });

  it('stores a hash of the token, never the token', async () => {
    const database = await openTestDatabase(env);
    try {
      const rows = await database.all<Record<string, unknown>>('select * from webhook_tokens');
      expect(rows.length).toBeGreaterThan(0);
      expect(JSON.stringify(rows)).not.toContain(acme.token);
    } finally {
      await database.close();
    }
  });

  it("labels the calls and devices of webhooks that bring it with the group's tenant", async () => {
    expect(await service.call('TENANT-ACME-1')).toMatchObject({ tenant: 'Acme Corp.' });
    // The single WEBHOOK_TOKEN works as before: no tenant.
    expect(await service.call('TENANT-NONE-1')).toMatchObject({ tenant: null });
    const device = (await (await service.api('/api/devices/dev-acme')).json()) as { tenant: string | null; status: string };
    expect(device).toMatchObject({ tenant: 'Acme Corp.', status: 'connected' });
    expect(((await (await service.api('/api/devices/dev-shared')).json()) as { tenant: string | null }).tenant).toBeNull();

    const page = (await (await service.api('/api/calls')).json()) as { calls: { whatsapp_call_id: string; tenant: string | null }[] };
    expect(page.calls.find((item) => item.whatsapp_call_id === 'TENANT-ACME-1')?.tenant).toBe('Acme Corp.');
  });

  it('filters calls and devices by tenant', async () => {
    // Acme's calls only (other tests here add more of theirs), and never the operator's.
    const acmeCalls = await listCallIds(`?tenant=${encodeURIComponent('Acme Corp.')}`);
    expect(acmeCalls).toContain('TENANT-ACME-1');
    expect(acmeCalls).not.toContain('TENANT-NONE-1');
    for (const callId of acmeCalls) expect((await service.call(callId)).tenant).toBe('Acme Corp.');
    expect(await listCallIds('?tenant=nobody')).toEqual([]);
    const devices = (await (await service.api(`/api/devices?tenant=${encodeURIComponent('Acme Corp.')}`)).json()) as { devices: { id_session: string }[] };
    expect(devices.devices.map((item) => item.id_session)).toEqual(['dev-acme']);
  });

  it('keeps a call with its group: a webhook with the token of another group does not change it', async () => {
    const globex = await createToken(service, 'globex');
    const before = await service.call('TENANT-ACME-1');
    expect((await service.postWebhook({ ...call('TENANT-ACME-1', 'dev-acme'), status: 'REJECTED' }, { token: globex.token })).status).toBe(200);
    await waitForEventsApplied(env);
    expect(await service.call('TENANT-ACME-1')).toMatchObject({ tenant: 'Acme Corp.', status: before.status });
    expect(service.logs().some((line) => line.level === 40 && line.msg.includes('belongs to device group Acme Corp.'))).toBe(true);
    // The single token still reaches every call.
    expect((await service.postWebhook({ ...call('TENANT-ACME-1', 'dev-acme'), status: 'ACTIVE' })).status).toBe(200);
    await waitForEventsApplied(env);
    expect(await service.call('TENANT-ACME-1')).toMatchObject({ tenant: 'Acme Corp.', status: 'ACTIVE' });
  });

  it("keeps a device with its group: another group's token can neither take it over nor feed its phone into the group's calls", async () => {
    const initech = await createToken(service, 'initech');
    expect(
      (await service.postWebhook({ type: 'DEVICE', action: 'UPDATE', id_session: 'dev-acme', phone: '5599900000000', status: 'close' }, { token: initech.token }))
        .status,
    ).toBe(200);
    await waitForEventsApplied(env);
    const device = (await (await service.api('/api/devices/dev-acme')).json()) as { tenant: string | null; status: string; phone: string | null };
    expect(device).toMatchObject({ tenant: 'Acme Corp.', status: 'connected', phone: '+5511911112222' });
    expect(service.logs().some((line) => line.level === 40 && line.msg.includes('device dev-acme belongs to another device group'))).toBe(true);

    // acme's next call, whose payload leaves our own number out, takes it from acme's device.
    expect((await service.postWebhook({ type: 'RECORD', whatsapp_call_id: 'ACME-NEXT', id_session: 'dev-acme', record_status: 'RECORDING' }, { token: acme.token })).status).toBe(200);
    await waitForEventsApplied(env);
    expect(await service.call('ACME-NEXT')).toMatchObject({ tenant: 'Acme Corp.', device_phone: '+5511911112222' });
  });

  it('lets no group claim a call that came with the operator token', async () => {
    const hooli = await createToken(service, 'hooli');
    expect((await service.postWebhook({ ...call('TENANT-NONE-1', 'dev-shared'), status: 'REJECTED' }, { token: hooli.token })).status).toBe(200);
    await waitForEventsApplied(env);
    expect(await service.call('TENANT-NONE-1')).toMatchObject({ tenant: null, status: 'INCOMING_RING' });
    expect(service.logs().some((line) => line.level === 40 && line.msg.includes('call TENANT-NONE-1 belongs to no device group'))).toBe(true);
  });

  it('refuses a revoked token with 401, and logs which group it was', async () => {
    const revoking = await createToken(service, 'to-revoke');
    expect((await service.postWebhook(call('TENANT-REVOKE-1', 'dev-revoke'), { token: revoking.token })).status).toBe(200);

    const response = await service.api(`/api/webhook-tokens/${revoking.id}`, { method: 'DELETE' });
    expect(response.status).toBe(200);
    const revoked = (await response.json()) as { id: string; revoked_at: string | null };
    expect(revoked.id).toBe(revoking.id);
    expect(Date.parse(String(revoked.revoked_at))).not.toBeNaN();

    expect((await service.postWebhook(call('TENANT-REVOKE-2', 'dev-revoke'), { token: revoking.token })).status).toBe(401);
    await waitFor(() => service.logs().some((line) => String(line.msg).includes('revoked token of device group to-revoke')), 'the refusal logged');
    // The other tokens are untouched.
    expect((await service.postWebhook(call('TENANT-ACME-2', 'dev-acme'), { token: acme.token })).status).toBe(200);
    expect((await service.postWebhook(call('TENANT-NONE-2', 'dev-shared'))).status).toBe(200);

    const listed = (await (await service.api('/api/webhook-tokens')).json()) as { webhook_tokens: { id: string; revoked_at: string | null }[] };
    expect(listed.webhook_tokens.find((token) => token.id === revoking.id)?.revoked_at).toBe(revoked.revoked_at);
    // Revoking again keeps the first time.
    const again = (await (await service.api(`/api/webhook-tokens/${revoking.id}`, { method: 'DELETE' })).json()) as { revoked_at: string };
    expect(again.revoked_at).toBe(revoked.revoked_at);
  });

  it('answers 404 for an unknown token id', async () => {
    const response = await service.api('/api/webhook-tokens/nope', { method: 'DELETE' });
    expect(response.status).toBe(404);
    expect(((await response.json()) as { error: string }).error).toBe('no webhook token with id "nope"');
  });

  it.each([
    [{ label: '' }, 'label'],
    [{ label: ' padded' }, 'label'],
    [{ label: 'x'.repeat(65) }, 'label'],
    [{ label: 'semi;colon' }, 'label'],
    [{ label: { name: 'acme' } }, 'label'],
    [{}, 'label'],
    [{ label: 'ok', extra: 1 }, 'extra'],
  ])('refuses %j with 400 naming the field', async (body, field) => {
    const response = await service.api('/api/webhook-tokens', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    expect(response.status).toBe(400);
    expect(((await response.json()) as { field?: string }).field).toBe(field);
  });

  it('refuses a tenant filter that cannot be a label, naming it', async () => {
    const response = await service.api(`/api/calls?tenant=${encodeURIComponent('a;b')}`);
    expect(response.status).toBe(400);
    expect((await response.json()) as { error: string; field?: string }).toMatchObject({ field: 'tenant', error: expect.stringMatching(/tenant must match pattern/) });
  });

  it('needs the API token', async () => {
    expect((await service.api('/api/webhook-tokens', { token: 'wrong-token-123' })).status).toBe(401);
    expect((await service.api('/api/webhook-tokens', { method: 'POST', token: 'wrong-token-123' })).status).toBe(401);
  });
});

describe('the lock-out with device-group tokens', () => {
  it('counts wrong tokens, and lets a right group token through from a locked-out address', async () => {
    const locking = await startInProcessService(testEnvironment(storage.origin, await makeDataDir(), { ...NO_POLLING, AUTH_FAILURE_LIMIT: '3' }));
    try {
      const group = await createToken(locking, 'locked');
      const statuses: number[] = [];
      for (let attempt = 0; attempt < 5; attempt += 1) statuses.push((await locking.postWebhook(call(`LOCK-${attempt}`, 'dev-lock'), { token: 'wrong-token-456' })).status);
      expect(statuses).toEqual([401, 401, 401, 429, 429]);
      expect((await locking.postWebhook(call('LOCK-GROUP', 'dev-lock'), { token: group.token })).status).toBe(200);
      expect((await locking.postWebhook(call('LOCK-SINGLE', 'dev-lock'), { token: WEBHOOK_TOKEN })).status).toBe(200);
    } finally {
      await locking.stop();
    }
  });
});

describe.runIf(testDialect === 'postgres')('replicas on one PostgreSQL database', () => {
  it('take a token created on one at once, and refuse it on every one once revoked', async () => {
    const shared = testEnvironment(storage.origin, await makeDataDir(), NO_POLLING);
    const first = await startInProcessService(shared);
    const second = await startInProcessService({ ...shared, DATA_DIR: await makeDataDir() });
    try {
      const created = await createToken(first, 'fleet');
      await waitFor(async () => (await second.postWebhook(call('FLEET-1', 'dev-fleet'), { token: created.token })).status === 200, 'the new token taken by the other replica');
      expect((await first.api(`/api/webhook-tokens/${created.id}`, { method: 'DELETE' })).status).toBe(200);
      await waitFor(async () => (await second.postWebhook(call('FLEET-2', 'dev-fleet'), { token: created.token })).status === 401, 'the revoked token refused by the other replica');
      expect((await first.postWebhook(call('FLEET-3', 'dev-fleet'), { token: created.token })).status).toBe(401);
    } finally {
      await Promise.all([first.stop(), second.stop()]);
    }
  });
});
