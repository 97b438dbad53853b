/**
 * Uploads one recording through the Chatwoot client in a process of its own, so that what it
 * holds in memory is measured without a test runner's or a server's allocations around it.
 *   node --expose-gc --import tsx test/support/chatwoot-upload-child.ts '<json options>'
 * Prints one JSON line: { peakHeldMiB, elapsedMs, messageId }. With --expose-gc, memory is
 * sampled after a collection, so only what is still held counts (not chunks already sent).
 */
import { createChatwootClient } from '../../src/delivery/chatwoot-client.ts';

interface Options {
  url: string;
  token: string;
  accountId: number;
  conversationId: number;
  path: string;
  contentType: string;
  sample: boolean;
}

const options = JSON.parse(process.argv[2] ?? '{}') as Options;
const collect = (globalThis as { gc?: () => void }).gc;
if (options.sample && !collect) throw new Error('run with --expose-gc to sample memory');
const client = createChatwootClient({ url: options.url, token: options.token, accountId: options.accountId });
const post = (sourceId: string) =>
  client.postMessage(options.conversationId, {
    content: 'Recording',
    messageType: 'outgoing',
    private: true,
    sourceId,
    attachment: { path: options.path, contentType: options.contentType, fileName: 'recording.wav' },
  });

// The first upload loads and compiles what an upload needs; the second is the one measured.
await post(`warm-up-${process.pid}`);
collect?.();
const baseline = process.memoryUsage().arrayBuffers + process.memoryUsage().heapUsed;
let peak = 0;
const sampler = options.sample
  ? setInterval(() => {
      collect?.();
      const usage = process.memoryUsage();
      peak = Math.max(peak, usage.arrayBuffers + usage.heapUsed - baseline);
    }, 50)
  : undefined;
const started = performance.now();
const message = await post(`measured-${process.pid}`);
const elapsedMs = performance.now() - started;
clearInterval(sampler);
await client.close();
console.log(JSON.stringify({ peakHeldMiB: peak / 1024 / 1024, elapsedMs, messageId: message.id }));
