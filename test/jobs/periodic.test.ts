import { describe, expect, it } from 'vitest';
import { createPeriodicTask } from '../../src/jobs/periodic.ts';

describe('createPeriodicTask', () => {
  it('runs at start, and stop() tells a long run to stop and waits for it', async () => {
    const steps: number[] = [];
    let started!: () => void;
    const running = new Promise<void>((resolve) => (started = resolve));
    const task = createPeriodicTask(
      async (signal) => {
        started();
        // A run far longer than any shutdown should wait for, checking its signal between steps.
        for (let step = 0; step < 1_000_000 && !signal.aborted; step += 1) {
          steps.push(step);
          await new Promise((resolve) => setImmediate(resolve));
        }
      },
      60_000,
      () => {},
    );
    task.start();
    await running;
    await task.stop();
    const stoppedAt = steps.length;
    expect(stoppedAt).toBeGreaterThan(0);
    expect(stoppedAt).toBeLessThan(1_000_000);
    await new Promise((resolve) => setImmediate(resolve));
    expect(steps.length).toBe(stoppedAt);
  });

  it('reports a failed run and runs no other once stopped', async () => {
    const errors: string[] = [];
    let runs = 0;
    const task = createPeriodicTask(
      async () => {
        runs += 1;
        throw new Error('disk on fire');
      },
      60_000,
      (error) => errors.push(error.message),
    );
    task.start();
    await task.stop();
    expect(errors).toEqual(['disk on fire']);
    task.start();
    await task.stop();
    expect(runs).toBe(1);
  });
});
