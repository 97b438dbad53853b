import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { makeDataDir } from '../test/support/service-harness.ts';
import { startFakeChatwoot } from '../test/support/fake-chatwoot.ts';
import { median, REPO_ROOT, round } from './support.ts';
import { writeWavFile } from '../test/support/wav.ts';

const MiB = 1024 * 1024;
const REPETITIONS = 7;
const run = promisify(execFile);
const UPLOAD_CHILD = path.join(REPO_ROOT, 'test', 'support', 'chatwoot-upload-child.ts');

/**
 * A recording posted to the loopback Chatwoot as a message attachment: the delivery client (in
 * a process of its own, its second upload timed, as the service would after start-up) against
 * `curl -F` with the same fields to the same server (curl's own time_total, so neither side pays
 * for process start). Medians of alternating runs.
 */
export async function benchChatwootUpload(sizeMiB: number) {
  const workDir = await makeDataDir();
  const file = path.join(workDir, 'recording.wav');
  writeWavFile(file, sizeMiB * MiB);
  const chatwoot = await startFakeChatwoot();
  try {
    const contact = chatwoot.seedContact({ phone: '+5511987654321', inboxId: chatwoot.apiInboxId });
    const conversation = chatwoot.seedConversation(contact.id, chatwoot.apiInboxId);
    const url = `${chatwoot.origin}/api/v1/accounts/${chatwoot.accountId}/conversations/${conversation.displayId}/messages`;
    const curlRuns: number[] = [];
    const clientRuns: number[] = [];
    for (let repetition = 0; repetition < REPETITIONS; repetition++) {
      const { stdout: curlSeconds } = await run('curl', [
        '-sS', '--fail', '-o', '/dev/null', '-w', '%{time_total}',
        '-H', `api_access_token: ${chatwoot.token}`,
        '-F', 'content=Recording', '-F', 'message_type=outgoing', '-F', 'private=true', '-F', `source_id=curl-${repetition}`,
        '-F', `attachments[]=@${file};type=audio/wav;filename=recording.wav`,
        url,
      ]);
      curlRuns.push(Number(curlSeconds) * 1000);
      const options = { url: chatwoot.origin, token: chatwoot.token, accountId: chatwoot.accountId, conversationId: conversation.displayId, path: file, contentType: 'audio/wav', sample: false };
      const { stdout } = await run(process.execPath, ['--import', 'tsx', UPLOAD_CHILD, JSON.stringify(options)], { cwd: REPO_ROOT });
      clientRuns.push((JSON.parse(stdout.trim().split('\n').at(-1) as string) as { elapsedMs: number }).elapsedMs);
    }
    const uploads = chatwoot.messages(conversation).flatMap((message) => message.attachments);
    if (uploads.length !== REPETITIONS * 3 || uploads.some((upload) => upload.size !== sizeMiB * MiB || upload.fileType !== 'audio')) {
      throw new Error('an upload did not arrive whole, as audio');
    }
    const curlMs = median(curlRuns);
    const clientMs = median(clientRuns);
    const row = {
      size_mib: sizeMiB,
      repetitions: REPETITIONS,
      curl_ms: round(curlMs, 0),
      client_ms: round(clientMs, 0),
      curl_mib_s: round((sizeMiB / curlMs) * 1000, 0),
      client_mib_s: round((sizeMiB / clientMs) * 1000, 0),
      throughput_ratio: round(curlMs / clientMs, 3),
    };
    return { name: 'chatwoot-upload', rows: [row], targets: { 'upload throughput ≥ 80% of curl -F': row.throughput_ratio >= 0.8 } };
  } finally {
    await chatwoot.close();
    fs.rmSync(workDir, { recursive: true, force: true });
  }
}
