import type { CallRecord } from '../calls/call-state.ts';
import type { StoredCall } from '../db/calls-repository.ts';
import type { Delivery } from '../db/deliveries-repository.ts';
import { AppError } from '../errors.ts';

/** What a destination returns for a delivery that arrived. */
export interface DeliveryReceipt {
  /** What the destination calls what it made (Chatwoot contact, conversation, message ids; the webhook-id), kept on the delivery. */
  externalIds: Record<string, string | number>;
  /** For the log, after `✅`: e.g. "call.ended delivered to https://crm.example.com/hook". No secret. */
  summary: string;
}

/**
 * Somewhere calls are delivered to: a Chatwoot account, an outbound webhook URL. The engine
 * leases, orders, retries and records; a destination only sends one delivery and says how it went,
 * by throwing an AppError the engine classifies (classifyDeliveryError).
 */
export interface Destination {
  /** Unique and stable: stored on every delivery. Never a secret (URLs are redacted). */
  name: string;
  /** The log's tag, e.g. `Webhook`, `Chatwoot`. */
  logTag: string;
  /**
   * Deliveries with the same key never run at once, across calls and replicas: Chatwoot keys by
   * contact phone, so that two calls of one new contact do not create it twice. Null: no such need.
   */
  serialKey(call: CallRecord): string | null;
  /**
   * Sends one delivery, built from the call as it is now. `delivery.outcomeUnknown`: an earlier
   * attempt may have arrived without its answer (look before posting again, where that matters).
   */
  deliver(delivery: Delivery, call: StoredCall, signal: AbortSignal): Promise<DeliveryReceipt>;
  /** Releases what it holds (connections); called once no delivery runs any more. */
  close?(): Promise<void>;
}

/**
 * Error codes a destination throws. Anything else: `retryable` AppErrors (5xx, 408, 429, resets,
 * timeouts; retryAfterMs honoured) are tried again until DELIVERY_MAX_WAIT, the rest given up.
 */
export const DELIVERY_ERROR_CODES = {
  /** The destination's settings are wrong (401, 403, a 404 on its base address): blocked until a probe goes through. */
  blocked: 'DESTINATION_BLOCKED',
  /** The receiver asked never to be called again (410 Gone): disabled. */
  gone: 'DESTINATION_GONE',
  /** Sent, but the answer was lost (timeout, reset): retried, and the next attempt is told the outcome is unknown. */
  answerLost: 'DELIVERY_ANSWER_LOST',
} as const;

type DeliveryFailure = 'retry' | 'blocked' | 'gone' | 'permanent';

export function classifyDeliveryError(error: AppError): DeliveryFailure {
  if (error.code === DELIVERY_ERROR_CODES.blocked) return 'blocked';
  if (error.code === DELIVERY_ERROR_CODES.gone) return 'gone';
  return error.retryable || error.code === DELIVERY_ERROR_CODES.answerLost ? 'retry' : 'permanent';
}

export function asAppError(caught: unknown): AppError {
  if (caught instanceof AppError) return caught;
  const message = caught instanceof Error ? caught.message : String(caught);
  return new AppError(message, { code: 'UNEXPECTED', retryable: true, cause: caught });
}
