import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createChatwootClient } from '../src/delivery/chatwoot-client.ts';
import { startFakeChatwoot, type FakeChatwoot, type FakeChatwootOptions } from '../test/support/fake-chatwoot.ts';
import { startFakeWavoipStorage } from '../test/support/fake-wavoip-storage.ts';
import { makeDataDir, NO_POLLING, startChildService, testEnvironment, type ChildService } from '../test/support/service-harness.ts';
import { percentile, readMemory, round } from './support.ts';

const OGG = fileURLToPath(new URL('../test/fixtures/audio/call-pt-br-9s.ogg', import.meta.url));
const CONCURRENCY = 4;
/** Chatwoot's own limit (3,000 a minute per IP) would make the drain a test of the 429 backoff instead. */
const UNTHROTTLED: FakeChatwootOptions['rateLimit'] = { requestsPerPeriod: 1e9, searchesPerPeriod: 1e9 };

/**
 * Chatwoot as a destination, on loopback. (1) Attached → a Chatwoot message with the audio: from
 * the recording's attached_at to the fake committing the message, one call at a time (the call's
 * summary already posted, as in production); the baseline is a bare client posting the same file
 * to the same conversation. (2) Many calls of new contacts ending at once, against a Chatwoot that
 * takes `latencyMs` per request: the outbox drains at the pace a bare client with the same
 * concurrency gets from the same server, with the service's memory flat.
 */
export async function benchChatwootDelivery(attachedCalls: number, drainCalls: number, latencyMs: number) {
  const { targets: attachedTargets, ...attached } = await benchAttached(attachedCalls);
  const { targets: drainTargets, ...drain } = await benchDrain(drainCalls, latencyMs);
  return { name: 'chatwoot-delivery', attached, drain, targets: { ...attachedTargets, ...drainTargets } };
}

async function benchAttached(calls: number) {
  const chatwoot = await startFakeChatwoot({ rateLimit: UNTHROTTLED });
  const storage = await startFakeWavoipStorage();
  const ogg = fs.readFileSync(OGG);
  const service = await startChildService(testEnvironment(storage.origin, await makeDataDir(), { ...NO_POLLING, LOG_LEVEL: 'info', ...chatwootEnv(chatwoot) }), { keepLogs: false });
  try {
    const latencies: number[] = [];
    for (let index = 0; index < calls; index += 1) {
      const callId = `attached-${index}`;
      for (const status of ['ACTIVE', 'ENDED']) await service.postWebhook({ type: 'CALL', whatsapp_call_id: callId, status, direction: 'INCOMING', caller: '5511987654321', duration: 9 });
      await until(() => messageOf(chatwoot, callId, 'call') !== undefined);
      storage.setRoute(`/${callId}`, { kind: 'body', body: ogg, contentType: 'audio/ogg' });
      await service.postWebhook({ type: 'RECORD', whatsapp_call_id: callId, record_status: 'READY', record_url: storage.url(`/${callId}`) });
      await until(() => messageOf(chatwoot, callId, 'recording') !== undefined);
      const call = (await (await service.api(`/api/calls/${callId}`)).json()) as { attachment: { attached_at: string } };
      const posted = messageOf(chatwoot, callId, 'recording');
      if (posted?.attachments[0]?.fileType !== 'audio') throw new Error(`call ${callId}: the recording did not arrive as audio`);
      latencies.push(posted.committedAtMs - Date.parse(call.attachment.attached_at));
    }
    const conversation = chatwoot.conversations()[0]!.displayId;
    const baseline = await bareClientPosts(chatwoot, conversation, calls);
    const sorted = latencies.sort((a, b) => a - b);
    const p50 = percentile(sorted, 50);
    return {
      calls,
      file_bytes: ogg.length,
      attached_to_message_p50_ms: round(p50),
      attached_to_message_p90_ms: round(percentile(sorted, 90)),
      attached_to_message_max_ms: round(sorted.at(-1) ?? 0),
      baseline_bare_client_post_p50_ms: round(baseline),
      targets: { 'attached → Chatwoot message with the audio p50 < 100 ms': p50 < 100 },
    };
  } finally {
    await service.kill('SIGTERM');
    await storage.close();
    await chatwoot.close();
  }
}

/** The same file posted by the client alone, warm, to the same conversation: answered round trips. */
async function bareClientPosts(chatwoot: FakeChatwoot, conversationId: number, times: number): Promise<number> {
  const client = createChatwootClient({ url: chatwoot.origin, token: chatwoot.token, accountId: chatwoot.accountId });
  try {
    const timings: number[] = [];
    for (let index = 0; index < times; index += 1) {
      const started = performance.now();
      await client.postMessage(conversationId, {
        content: 'baseline',
        messageType: 'outgoing',
        private: true,
        sourceId: `baseline-${index}`,
        attachment: { path: OGG, contentType: 'audio/ogg', fileName: 'call.ogg' },
      });
      timings.push(performance.now() - started);
    }
    return percentile(timings.sort((a, b) => a - b), 50);
  } finally {
    await client.close();
  }
}

async function benchDrain(calls: number, latencyMs: number) {
  const baselinePerSecond = await bareClientPace(calls, latencyMs);
  const chatwoot = await startFakeChatwoot({ latencyMs, rateLimit: UNTHROTTLED });
  const env = testEnvironment('http://127.0.0.1:9', await makeDataDir(), { ...NO_POLLING, LOG_LEVEL: 'info', DELIVERY_CONCURRENCY: String(CONCURRENCY), ...chatwootEnv(chatwoot) });
  const service = await startChildService(env, { keepLogs: false });
  const pid = service.child.pid as number;
  // Polled in the fake's own process: anything costlier than a count would slow the fake down.
  const posted = () => chatwoot.messageCount();
  try {
    const memoryBefore = readMemory(pid).rssMiB;
    const samples: number[] = [];
    const sampler = setInterval(() => samples.push(readMemory(pid).rssMiB), 100);
    const started = performance.now();
    await endCalls(service, calls);
    const acknowledgedMs = performance.now() - started;
    const postedWhenAcknowledged = posted();
    await until(() => posted() >= calls, 10);
    const drainedMs = performance.now() - started;
    clearInterval(sampler);
    const perSecond = (calls - postedWhenAcknowledged) / ((drainedMs - acknowledgedMs) / 1000);
    const peak = Math.max(...samples, memoryBefore);
    const half = Math.floor(samples.length / 2);
    const mean = (values: number[]) => values.reduce((sum, value) => sum + value, 0) / Math.max(values.length, 1);
    const once = posted() === calls && chatwoot.contacts().length === calls && chatwoot.conversations().length === calls;
    return {
      calls,
      chatwoot_latency_ms_per_request: latencyMs,
      delivery_concurrency: CONCURRENCY,
      all_acknowledged_ms: round(acknowledgedMs),
      posted_when_all_acknowledged: postedWhenAcknowledged,
      all_posted_ms: round(drainedMs),
      calls_per_second: round(perSecond),
      baseline_bare_client_calls_per_second: round(baselinePerSecond),
      of_baseline: round(perSecond / baselinePerSecond, 2),
      rss_before_mib: round(memoryBefore),
      rss_peak_mib: round(peak),
      rss_mean_first_half_mib: round(mean(samples.slice(0, half))),
      rss_mean_second_half_mib: round(mean(samples.slice(half))),
      targets: {
        'drains at ≥ 0.8× a bare client’s pace on the same Chatwoot': perSecond >= 0.8 * baselinePerSecond,
        'every call posted once, one contact and conversation each': once,
        'memory flat: peak < 64 MiB above the start': peak - memoryBefore < 64,
      },
    };
  } finally {
    await service.kill('SIGTERM');
    await chatwoot.close();
  }
}

/** The baseline: what a new contact's first message costs (find, create, list, create, post), CONCURRENCY at a time. */
async function bareClientPace(calls: number, latencyMs: number): Promise<number> {
  const chatwoot = await startFakeChatwoot({ latencyMs, rateLimit: UNTHROTTLED });
  const client = createChatwootClient({ url: chatwoot.origin, token: chatwoot.token, accountId: chatwoot.accountId, connections: CONCURRENCY });
  const inboxId = chatwoot.whatsappInboxId;
  let next = 0;
  const started = performance.now();
  try {
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        for (let index = next++; index < calls; index = next++) {
          const phone = phoneOf(index);
          const contact = (await client.findContactByPhone(phone)) ?? (await client.createContact({ inboxId, name: phone, phone })).contact;
          const conversation = (await client.findLatestConversation(contact.id, inboxId)) ?? (await client.createConversation({ contactId: contact.id, inboxId }));
          await client.postMessage(conversation.id, { content: 'baseline', messageType: 'outgoing', private: true, sourceId: `baseline-${index}` });
        }
      }),
    );
    return calls / ((performance.now() - started) / 1000);
  } finally {
    await client.close();
    await chatwoot.close();
  }
}

/** As a burst of hang-ups comes: 50 webhooks in flight at a time, each call a new contact. */
async function endCalls(service: ChildService, calls: number): Promise<void> {
  for (let index = 0; index < calls; index += 50) {
    await Promise.all(
      Array.from({ length: Math.min(50, calls - index) }, async (_, offset) => {
        const body = { type: 'CALL', whatsapp_call_id: `drain-${index + offset}`, status: 'NOT_ANSWERED', direction: 'INCOMING', caller: phoneOf(index + offset).slice(1) };
        const response = await service.postWebhook(body);
        if (response.status !== 200) throw new Error(`webhook answered ${response.status}`);
      }),
    );
  }
}

const phoneOf = (index: number) => `+55119${String(index).padStart(8, '0')}`;

function chatwootEnv(chatwoot: FakeChatwoot): Record<string, string> {
  return { CHATWOOT_URL: chatwoot.origin, CHATWOOT_API_TOKEN: chatwoot.token, CHATWOOT_ACCOUNT_ID: String(chatwoot.accountId), CHATWOOT_INBOX_ID: String(chatwoot.whatsappInboxId) };
}

function messageOf(chatwoot: FakeChatwoot, callId: string, fact: string) {
  for (const conversation of chatwoot.conversations()) {
    const found = chatwoot.messages(conversation.displayId).find((message) => message.sourceId === `wavoip:${callId}:${fact}`);
    if (found) return found;
  }
  return undefined;
}

async function until(condition: () => boolean, everyMs = 1): Promise<void> {
  const deadline = Date.now() + 300_000;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('benchmark timed out');
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}
