import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Clock } from '../../src/clock.ts';
import { startFakeWavoipStorage, type FakeWavoipStorage } from '../support/fake-wavoip-storage.ts';
import { NO_POLLING, makeDataDir, startInProcessService, testEnvironment, waitFor, type InProcessService } from '../support/service-harness.ts';

class MovedClock implements Clock {
  offsetMs = 0;
  now(): number {
    return Date.now() + this.offsetMs;
  }
}

const ogg = fs.readFileSync(new URL('../fixtures/audio/call-pt-br-9s.ogg', import.meta.url));
let storage: FakeWavoipStorage;

beforeAll(async () => {
  storage = await startFakeWavoipStorage();
});
afterAll(async () => {
  await storage?.close();
});

interface Page {
  calls: { whatsapp_call_id: string; peer_phone: string | null }[];
  next_cursor: string | null;
}

describe('GET /api/calls?q= (search)', () => {
  let service: InProcessService;
  const ids = async (query: string) => {
    const response = await service.api(`/api/calls?${query}`);
    expect(response.status, query).toBe(200);
    return ((await response.json()) as Page).calls.map((call) => call.whatsapp_call_id);
  };

  beforeAll(async () => {
    service = await startInProcessService(testEnvironment(storage.origin, await makeDataDir(), NO_POLLING));
    const incoming = (callId: string, caller: string) => ({ type: 'CALL', action: 'CREATE', whatsapp_call_id: callId, status: 'ACTIVE', direction: 'INCOMING', caller, receiver: '5511933334444', id_session: 789 });
    // One after another, so that newest first has a meaning.
    for (const [callId, caller] of [['SEARCH-AB-1', '5511911112222'], ['SEARCH-AB-2', '5511955556666'], ['SEARCH-XY-3', '5511911112222'], ['OTHER-4', '5511977778888']] as const) {
      expect((await service.postWebhook(incoming(callId, caller))).status).toBe(200);
      await waitFor(async () => (await service.api(`/api/calls/${callId}`)).status === 200, callId);
    }
    await service.postWebhook({ type: 'RECORD', whatsapp_call_id: 'SEARCH-XY-3', record_status: 'READY', record_url: 'http://10.0.0.1/x' });
    await service.waitForAttachment('SEARCH-XY-3', 'failed');
  });
  afterAll(async () => {
    await service?.stop();
  });

  it('given a phone number, in any common form, finds the calls with that other party', async () => {
    expect((await service.call('SEARCH-AB-1')).peer_phone).toBe('+5511911112222');
    for (const q of ['+5511911112222', '5511911112222', '+55 (11) 91111-2222']) {
      expect(await ids(`q=${encodeURIComponent(q)}`), q).toEqual(['SEARCH-XY-3', 'SEARCH-AB-1']);
    }
    // Our own device's number is not the other party.
    expect(await ids('q=5511933334444')).toEqual([]);
  });

  it('given anything else, finds the calls whose id starts with it (exactly: not inside it, not in another case)', async () => {
    expect(await ids('q=SEARCH-')).toEqual(['SEARCH-XY-3', 'SEARCH-AB-2', 'SEARCH-AB-1']);
    expect(await ids('q=SEARCH-AB')).toEqual(['SEARCH-AB-2', 'SEARCH-AB-1']);
    expect(await ids('q=SEARCH-AB-1')).toEqual(['SEARCH-AB-1']);
    expect(await ids('q=EARCH')).toEqual([]);
    expect(await ids('q=search-ab')).toEqual([]);
    expect(await ids('q=SEARCH-AB-10')).toEqual([]);
  });

  it('combines with the other filters and pages with the cursor', async () => {
    expect(await ids('q=SEARCH-&state=failed')).toEqual(['SEARCH-XY-3']);
    expect(await ids('q=SEARCH-AB&state=failed')).toEqual([]);
    expect(await ids('q=5511911112222&state=pending&direction=incoming')).toEqual(['SEARCH-AB-1']);
    const first = (await (await service.api('/api/calls?q=SEARCH-&limit=2')).json()) as Page;
    expect(first.calls.map((call) => call.whatsapp_call_id)).toEqual(['SEARCH-XY-3', 'SEARCH-AB-2']);
    expect(await ids(`q=SEARCH-&limit=2&cursor=${first.next_cursor}`)).toEqual(['SEARCH-AB-1']);
  });

  it.each([
    ['empty', ''],
    ['blank', '   '],
    ['a control character', 'SEARCH\u0001'],
    ['longer than a call id can be', 'X'.repeat(129)],
  ])('refuses a q that is %s with a 400 naming it', async (_name, q) => {
    const response = await service.api(`/api/calls?q=${encodeURIComponent(q)}`);
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ field: 'q' });
  });
});

describe('GET /api/summary', () => {
  const clock = new MovedClock();
  let service: InProcessService;
  const summary = async () => {
    const response = await service.api('/api/summary');
    expect(response.status).toBe(200);
    return (await response.json()) as Record<string, any>;
  };

  beforeAll(async () => {
    service = await startInProcessService(
      testEnvironment(storage.origin, await makeDataDir(), { ...NO_POLLING, DOWNLOAD_CONCURRENCY: '1', WEBHOOK_SILENCE_WARNING: '30s', SHUTDOWN_GRACE: '100ms' }),
      { clock },
    );
  });
  afterAll(async () => {
    await service?.stop();
  });

  it('before any webhook: every state at 0, nothing waiting, ready, and webhooks not silent yet', async () => {
    const answer = await summary();
    expect(answer).toEqual({
      calls_by_state: { pending: 0, attached: 0, failed: 0, empty: 0, disabled: 0, none: 0, expired: 0 },
      downloads: { running: 0, waiting: 0, oldest_waiting_since: null },
      readiness: { status: 'ready', database: 'ok', storage: 'ok' },
      webhooks: { last_received_at: null, silence_warning_seconds: 30, silent: false },
      devices_silent: 0,
    });
  });

  it('counts calls by state, the latest webhook, and silence of webhooks and devices as the clock moves', async () => {
    await service.postWebhook({ type: 'RECORD', whatsapp_call_id: 'SUM-EMPTY', id_session: 789, record_status: 'EMPTY_RECORDING' });
    await service.waitForAttachment('SUM-EMPTY', 'empty');
    const received = (await service.call('SUM-EMPTY')).events.at(-1) as unknown as { received_at: string };
    const answer = await summary();
    expect(answer.calls_by_state).toMatchObject({ empty: 1, pending: 0 });
    expect(answer.webhooks).toEqual({ last_received_at: received.received_at, silence_warning_seconds: 30, silent: false });
    expect(answer.devices_silent).toBe(0);
    expect(answer.readiness).toEqual(await (await fetch(`${service.url}/readyz`)).json());

    clock.offsetMs = 60_000;
    try {
      const later = await summary();
      expect(later.webhooks).toMatchObject({ last_received_at: received.received_at, silent: true });
      expect(later.devices_silent).toBe(1);
    } finally {
      clock.offsetMs = 0;
    }
  });

  it('shows downloads running, and those due waiting for a slot with the oldest one\'s time', async () => {
    // One download slot, held by a storage that never answers: the next READY has to wait.
    storage.setRoute('/SUM-STALLED', { kind: 'stall-before-headers' });
    storage.setRoute('/SUM-WAITING', { kind: 'body', body: ogg, contentType: 'audio/ogg' });
    await service.postWebhook({ type: 'RECORD', whatsapp_call_id: 'SUM-STALLED', record_status: 'READY', record_url: storage.url('/SUM-STALLED') });
    await waitFor(() => storage.requests('/SUM-STALLED') > 0, 'the stalled download started');
    await service.postWebhook({ type: 'RECORD', whatsapp_call_id: 'SUM-WAITING', record_status: 'READY', record_url: storage.url('/SUM-WAITING') });
    let answer: Record<string, any> = {};
    await waitFor(async () => {
      answer = await summary();
      return answer.downloads.waiting === 1;
    }, 'a download waiting for the slot');
    expect(answer.downloads.running).toBe(1);
    expect(Date.parse(answer.downloads.oldest_waiting_since)).toBeLessThanOrEqual(clock.now());
    expect(answer.calls_by_state).toMatchObject({ pending: 2, empty: 1 });
  });
});
