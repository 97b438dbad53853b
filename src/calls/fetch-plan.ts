import { becameReady, type CallRecord } from './call-state.ts';
import { formatDuration } from '../units.ts';

export interface PollTimings {
  pollInitialDelayMs: number;
  pollMaxDelayMs: number;
  pollMaxWaitMs: number;
}

/**
 * When a call's fetch job runs, and how urgent it is: 'fetch-now' (a recording known to be ready,
 * or an operator's retry) is claimed before any due poll, however long the polls have waited.
 */
export interface FetchSchedule {
  action: 'fetch-now' | 'poll';
  runAt: number;
  deadlineAt: number;
}

/** What to do with a call's one fetch job after an event changed the call. */
export type FetchPlan =
  | FetchSchedule
  | { action: 'cancel' }
  | { action: 'keep' };

/**
 * Decides the fetch job from the call before and after an event (received at `now`).
 * READY means download at once; a pending call without READY is polled from its end (or,
 * while no end is known, from when it was first seen); any other state ends the wait.
 */
export function planFetch(previous: CallRecord | null, next: CallRecord, now: number, timings: PollTimings): FetchPlan {
  if (next.attachment.state !== 'pending') {
    return previous?.attachment.state === 'pending' ? { action: 'cancel' } : { action: 'keep' };
  }
  if (becameReady(previous, next)) {
    return { action: 'fetch-now', runAt: now, deadlineAt: now + timings.pollMaxWaitMs };
  }
  if (next.recordStatus === 'READY') return { action: 'keep' };
  const pollStartChanged = previous?.attachment.state !== 'pending' || previous.endedAt !== next.endedAt;
  if (!pollStartChanged) return { action: 'keep' };
  const start = next.endedAt ?? next.firstSeenAt;
  return { action: 'poll', runAt: start + timings.pollInitialDelayMs, deadlineAt: start + timings.pollMaxWaitMs };
}

/** The schedule when an operator asks for a failed call to be fetched again: now, for another full wait. */
export function planRetry(now: number, timings: PollTimings): FetchSchedule {
  return { action: 'fetch-now', runAt: now, deadlineAt: now + timings.pollMaxWaitMs };
}

/**
 * When to try again after `failedAttempts` attempts failed: the delay doubles from
 * POLL_INITIAL_DELAY, with ±25% jitter so that calls that ended together do not poll in
 * step, capped at POLL_MAX_DELAY. An upstream's Retry-After is honoured up to that cap.
 * Returns null when the deadline has passed: give up.
 */
export function scheduleRetry(input: {
  failedAttempts: number;
  now: number;
  deadlineAt: number;
  retryAfterMs?: number | undefined;
  random: () => number;
  timings: PollTimings;
}): number | null {
  const { failedAttempts, now, deadlineAt, retryAfterMs, random, timings } = input;
  if (now >= deadlineAt) return null;
  const doubled = timings.pollInitialDelayMs * 2 ** Math.min(failedAttempts, 40);
  const jittered = Math.min(doubled, timings.pollMaxDelayMs) * (0.75 + 0.5 * random());
  const delay = Math.min(Math.max(jittered, retryAfterMs ?? 0), timings.pollMaxDelayMs);
  // The last attempt falls on the deadline itself rather than giving up early.
  return Math.min(now + Math.round(delay), deadlineAt);
}

/**
 * Why a call failed after POLL_MAX_WAIT. `fault` tells whose trouble the last attempt met:
 * WaVoIP's (the recording never came) or our own recording storage (full, read-only).
 */
export function describeGiveUp(timings: PollTimings, lastError: string, fault: 'upstream' | 'storage' = 'upstream'): string {
  const what = fault === 'storage' ? 'recording could not be stored in time' : 'recording not available in time';
  return `${what}: gave up after ${formatDuration(timings.pollMaxWaitMs)} of retries (last error: ${lastError})`;
}
