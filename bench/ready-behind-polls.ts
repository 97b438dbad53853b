import fs from 'node:fs';
import { startFakeWavoipStorage } from '../test/support/fake-wavoip-storage.ts';
import { makeDataDir, startChildService, testEnvironment, waitFor, type ChildService } from '../test/support/service-harness.ts';
import { median, round } from './support.ts';

const CONCURRENCY = 8;
const POLL_MS = 100;
const ogg = fs.readFileSync(new URL('../test/fixtures/audio/call-pt-br-9s.ogg', import.meta.url));

/** READY's 200 → the call attached, in ms (from the service's own `attached_at`). */
async function readyToAttached(service: ChildService, origin: string, callId: string): Promise<number> {
  const ready = await service.postWebhook({ type: 'RECORD', whatsapp_call_id: callId, record_status: 'READY', record_url: `${origin}/${callId}` });
  if (ready.status !== 200) throw new Error(`READY for ${callId} answered ${ready.status}`);
  const acknowledgedAt = Date.now();
  const call = await service.waitForAttachment(callId, 'attached');
  return Date.parse(call.attachment.attached_at as string) - acknowledgedAt;
}

/**
 * Every download slot busy with polls that fell due together (calls whose READY never came,
 * a storage that takes POLL_MS to answer 404, polled again every second), then READY events:
 * how long each waits, against the same READY before the backlog, in the same service. Were
 * READY queued behind the due polls, it would wait for a pass through them:
 * backlog × POLL_MS / DOWNLOAD_CONCURRENCY.
 */
export async function benchReadyBehindPolls(backlog: number, readies: number) {
  const storage = await startFakeWavoipStorage();
  const service = await startChildService(
    testEnvironment(storage.origin, await makeDataDir(), {
      LOG_LEVEL: 'info',
      DOWNLOAD_CONCURRENCY: String(CONCURRENCY),
      POLL_INITIAL_DELAY: '1s',
      POLL_MAX_DELAY: '1s',
      POLL_MAX_WAIT: '4h',
    }),
    { keepLogs: false },
  );
  try {
    for (let index = 0; index < readies * 2; index++) storage.setRoute(`/ready-${index}`, { kind: 'body', body: ogg, contentType: 'audio/ogg' });
    const idle: number[] = [];
    for (let index = 0; index < readies; index++) idle.push(await readyToAttached(service, storage.origin, `ready-${index}`));

    for (let index = 0; index < backlog; index++) {
      storage.setRoute(`/polled-${index}`, { kind: 'delayed', delayMs: POLL_MS, then: { kind: 'status', status: 404 } });
      await service.postWebhook({ type: 'CALL', action: 'UPDATE', whatsapp_call_id: `polled-${index}`, status: 'ENDED', duration: 30 });
    }
    // Every slot busy with polls, and more of them due than the slots can take.
    await waitFor(() => storage.requestedPaths().filter((path) => path.startsWith('/polled-')).length >= CONCURRENCY * 2, 'the polls to fill every slot', 30_000);
    const behind: number[] = [];
    for (let index = readies; index < readies * 2; index++) behind.push(await readyToAttached(service, storage.origin, `ready-${index}`));
    const pollsDuring = storage.requestedPaths().filter((path) => path.startsWith('/polled-')).length;

    const passMs = (backlog * POLL_MS) / CONCURRENCY;
    const extra = Math.max(...behind) - median(idle);
    return {
      name: 'ready-behind-polls',
      backlog_polls: backlog,
      download_concurrency: CONCURRENCY,
      poll_answer_ms: POLL_MS,
      polls_answered_meanwhile: pollsDuring,
      ready_to_attached_idle_median_ms: median(idle),
      ready_to_attached_behind_polls_median_ms: median(behind),
      ready_to_attached_behind_polls_max_ms: Math.max(...behind),
      one_pass_through_backlog_ms: round(passMs),
      targets: {
        [`READY waits for a free slot, not the backlog: at most one poll (${POLL_MS} ms) + 50 ms longer than idle`]: extra <= POLL_MS + 50,
      },
    };
  } finally {
    await service.kill('SIGTERM');
    await storage.close();
  }
}
