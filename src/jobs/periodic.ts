import { coerceError } from '../errors.ts';

export interface PeriodicTask {
  start(): void;
  /** Stops the timer and waits for a run in progress. */
  stop(): Promise<void>;
}

/**
 * Runs a task at start and then every intervalMs, never two runs at once. A failing run is
 * reported and the next one tries again; nothing here retries faster than the interval.
 */
export function createPeriodicTask(task: () => Promise<void>, intervalMs: number, onError: (error: Error) => void): PeriodicTask {
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;

  function run(): void {
    if (running) return;
    running = task()
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
      await running;
    },
  };
}
