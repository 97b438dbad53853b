/** One server-sent event as GET /api/live sends it. */
export interface LiveEvent {
  event: string;
  data: unknown;
}

export interface LiveStreamReader {
  status: number;
  headers: Headers;
  /** The `retry:` the stream opened with, once read. */
  retryMs: () => number | undefined;
  /** The next event (after those already taken) for which `matches` holds; the others are skipped. */
  next(matches?: (event: LiveEvent) => boolean, what?: string): Promise<LiveEvent>;
  /** Resolves once the server has ended the stream. */
  ended: Promise<void>;
  close(): void;
}

/** Opens GET /api/live like EventSource does, and reads its events as they come. */
export async function openLiveStream(url: string, headers: Record<string, string>): Promise<LiveStreamReader> {
  const abort = new AbortController();
  const response = await fetch(`${url}/api/live`, { headers: { accept: 'text/event-stream', ...headers }, signal: abort.signal });
  const events: LiveEvent[] = [];
  const waiters = new Set<() => void>();
  let retry: number | undefined;
  let finished = false;
  const ended = (async () => {
    if (response.body === null) return;
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffered = '';
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        buffered += decoder.decode(value, { stream: true });
        let end: number;
        while ((end = buffered.indexOf('\n\n')) >= 0) {
          const block = buffered.slice(0, end);
          buffered = buffered.slice(end + 2);
          const fields = new Map(block.split('\n').filter((line) => !line.startsWith(':')).map((line) => [line.slice(0, line.indexOf(':')), line.slice(line.indexOf(':') + 1).trimStart()]));
          if (fields.has('retry')) retry = Number(fields.get('retry'));
          if (fields.has('data')) events.push({ event: fields.get('event') ?? 'message', data: JSON.parse(fields.get('data') as string) });
          for (const wake of waiters) wake();
        }
      }
    } catch {
      // Aborted by close().
    } finally {
      finished = true;
      for (const wake of waiters) wake();
    }
  })();
  let taken = 0;
  return {
    status: response.status,
    headers: response.headers,
    retryMs: () => retry,
    async next(matches = () => true, what = 'an event') {
      for (;;) {
        while (taken < events.length) {
          const event = events[taken++] as LiveEvent;
          if (matches(event)) return event;
        }
        if (finished) throw new Error(`the live stream ended before ${what}`);
        const timedOut = await new Promise<boolean>((resolve) => {
          const timer = setTimeout(() => settle(true), 20_000);
          const woken = () => settle(false);
          function settle(late: boolean) {
            clearTimeout(timer);
            waiters.delete(woken);
            resolve(late);
          }
          waiters.add(woken);
        });
        if (timedOut) throw new Error(`timed out waiting for ${what} on the live stream`);
      }
    },
    ended,
    close: () => abort.abort(),
  };
}

/** A `calls` event naming this call. */
export function callsEventFor(callId: string, state?: string) {
  return (event: LiveEvent): boolean =>
    event.event === 'calls' &&
    (event.data as { calls: { whatsapp_call_id: string; attachment: { state: string } }[] }).calls.some(
      (call) => call.whatsapp_call_id === callId && (state === undefined || call.attachment.state === state),
    );
}
