import { coerceError } from '../errors.ts';

export interface PeriodicTask {
  start(): void;
  /** Stops the timer, tells a run in progress to stop (its signal), and waits for it. */
  stop(): Promise<void>;
}

/**
 * Runs a task at start and then every intervalMs, never two runs at once. A failing run is
 * reported and the next one tries again; nothing here retries faster than the interval. A long
 * run must check its signal between steps, so that a shutdown does not wait for all of it.
 */
export function createPeriodicTask(
  task: (signal: AbortSignal) => Promise<void>,
  intervalMs: number,
  onError: (error: Error) => void,
): PeriodicTask {
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;
  const stopping = new AbortController();

  function run(): void {
    if (running || stopping.signal.aborted) return;
    running = task(stopping.signal)
      .catch((caught: unknown) => onError(coerceError(caught)))
      .finally(() => {
        running = undefined;
      });
  }

  return {
    start(): void {
      run();
      timer = setInterval(run, intervalMs);
      timer.unref();
    },
    async stop(): Promise<void> {
      clearInterval(timer);
      stopping.abort();
      await running;
    },
  };
}
