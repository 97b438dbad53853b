import type { Clock } from '../clock.ts';
import type { Logger } from '../log/logger.ts';
import { formatDuration } from '../units.ts';

/**
 * Every refused webhook leaves a trace (a panel with an old token, a proxy that rewrites the
 * body: "no lines at all" must mean WaVoIP is not calling), without letting a sender that keeps
 * failing flood the log. The first refusal of a reason from an address is logged at once; its
 * repeats are counted and logged as one line per window while they go on.
 */
interface RefusalLog {
  /** `reason` must never hold the token or the body: it is logged as it is. */
  record(refusal: { reason: string; client: string; status: number }): void;
  /** Logs the counts of windows that have ended; runs every window by itself once started. */
  flush(): void;
  start(): void;
  /** Logs every count still open, so none is lost at shutdown. */
  stop(): void;
}

/** Past this many distinct (reason, address) pairs in one window, new addresses share one count. */
const MAX_TRACKED = 10_000;

export function createRefusalLog(deps: { logger: Logger; clock: Clock; windowMs?: number }): RefusalLog {
  const { logger, clock, windowMs = 60_000 } = deps;
  const open = new Map<string, { reason: string; client: string; status: number; since: number; repeats: number }>();
  let timer: NodeJS.Timeout | undefined;

  function closeWindow(key: string, now: number): void {
    const entry = open.get(key);
    if (entry === undefined) return;
    if (entry.repeats === 0) {
      open.delete(key);
      return;
    }
    logger.warn(
      { client: entry.client, reason: entry.reason, status: entry.status, count: entry.repeats },
      `[WaVoIP Webhook] Refused ${entry.repeats} more webhook${entry.repeats === 1 ? '' : 's'} from ${entry.client} in the last ${formatDuration(now - entry.since)}: ${entry.reason}`,
    );
    // The count goes on in a new window while the refusals do.
    open.set(key, { ...entry, since: now, repeats: 0 });
  }

  return {
    record({ reason, client: address, status }) {
      const now = clock.now();
      let client = address;
      let key = `${status} ${reason}\u0000${client}`;
      if (!open.has(key) && open.size >= MAX_TRACKED) {
        client = 'many addresses';
        key = `${status} ${reason}\u0000*`;
      }
      const entry = open.get(key);
      if (entry !== undefined && now - entry.since >= windowMs) closeWindow(key, now);
      const current = open.get(key);
      if (current !== undefined) {
        current.repeats += 1;
        return;
      }
      open.set(key, { reason, client, status, since: now, repeats: 0 });
      logger.warn({ client, reason, status }, `[WaVoIP Webhook] Refused a webhook from ${client} (${status}): ${reason}`);
    },
    flush() {
      const now = clock.now();
      for (const [key, entry] of open) if (now - entry.since >= windowMs) closeWindow(key, now);
    },
    start() {
      timer = setInterval(() => this.flush(), windowMs);
      timer.unref();
    },
    stop() {
      clearInterval(timer);
      const now = clock.now();
      for (const key of [...open.keys()]) closeWindow(key, now);
      open.clear();
    },
  };
}
