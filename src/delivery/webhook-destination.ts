import { createHash } from 'node:crypto';
import { Webhook } from 'standardwebhooks';
import type { DeliveryKind } from '../calls/delivery-plan.ts';
import { servedRecordingMediaType } from '../calls/recording-media-type.ts';
import type { Clock } from '../clock.ts';
import { presentCall } from '../api/call-view.ts';
import type { StoredCall } from '../db/calls-repository.ts';
import type { Delivery } from '../db/deliveries-repository.ts';
import { connectionFailure, parseRetryAfter } from '../download/download-recording.ts';
import type { HttpClient } from '../download/http-client.ts';
import { AppError, coerceError } from '../errors.ts';
import { DELIVERY_ERROR_CODES, type Destination, type DeliveryReceipt } from './destination.ts';
import type { RecordingLinks } from './recording-link.ts';

const WEBHOOK_EVENT_TYPES: Record<DeliveryKind, string> = {
  call: 'call.ended',
  recording: 'recording.attached',
  recording_unavailable: 'recording.unavailable',
};

/** Client errors that mean this URL or its credentials are wrong: fixed by the operator, not by waiting. */
const BLOCKING_STATUSES = new Set([401, 403, 404]);
const RETRYABLE_CLIENT_STATUSES = new Set([408, 425, 429]);
/** A receiver's answer is only read to free the connection; nothing in it is used. */
const MAX_ANSWER_BYTES = 64 * 1024;

/**
 * An outbound webhook URL, signed as the Standard Webhooks specification says: `webhook-id` is
 * the delivery's id (the same on every retry, so a receiver can drop duplicates),
 * `webhook-timestamp` the attempt's time, and `webhook-signature` `v1,<base64 HMAC-SHA256>` of
 * `id.timestamp.body` with the `whsec_` secret, made by the reference `standardwebhooks` package.
 */
export function createWebhookDestination(deps: { url: string; secret: string; client: HttpClient; clock: Clock; links: RecordingLinks }): Destination {
  const url = new URL(deps.url);
  const shown = describeWebhookUrl(deps.url);
  const signer = new Webhook(deps.secret);
  // undici sends no credentials written into a URL; receivers that take them expect Basic auth.
  const credentials: Record<string, string> =
    url.username === '' && url.password === ''
      ? {}
      : { authorization: `Basic ${Buffer.from(`${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`).toString('base64')}` };

  return {
    name: `webhook:${shown}`,
    logTag: 'Webhook',
    serialKey: () => null,
    async deliver(delivery, call, signal): Promise<DeliveryReceipt> {
      const type = WEBHOOK_EVENT_TYPES[delivery.kind];
      const now = deps.clock.now();
      const body = JSON.stringify(webhookEvent(delivery, call, now, deps.links));
      const sentAt = new Date(now);
      const headers = {
        ...credentials,
        'content-type': 'application/json',
        'webhook-id': delivery.id,
        'webhook-timestamp': String(Math.floor(now / 1000)),
        'webhook-signature': signer.sign(delivery.id, sentAt, body),
      };
      let response;
      try {
        response = await deps.client.send(url, { method: 'POST', headers, body, signal });
      } catch (caught) {
        throw connectionFailure(caught, url) ?? new AppError(`${shown}: ${describeLostAnswer(caught)}`, {
          code: DELIVERY_ERROR_CODES.answerLost,
          retryable: true,
          cause: caught,
        });
      }
      await drain(response.body);
      const status = response.statusCode;
      if (status >= 200 && status < 300) return { externalIds: { webhook_id: delivery.id }, summary: `${type} delivered to ${shown}` };
      const answered = `${shown} answered HTTP ${status}`;
      if (status === 410) throw new AppError(`${answered} (Gone): the receiver asked not to be called again`, { code: DELIVERY_ERROR_CODES.gone });
      if (BLOCKING_STATUSES.has(status) || (status >= 300 && status < 400)) {
        const hint = status >= 300 && status < 400 ? 'redirects are not followed: set the final address' : 'check the URL and what the receiver expects';
        throw new AppError(`${answered}; ${hint}`, { code: DELIVERY_ERROR_CODES.blocked });
      }
      const retryAfter = response.headers['retry-after'];
      throw new AppError(answered, {
        code: `HTTP_${status}`,
        retryable: status >= 500 || RETRYABLE_CLIENT_STATUSES.has(status),
        retryAfterMs: parseRetryAfter(Array.isArray(retryAfter) ? retryAfter[0] : retryAfter, now),
      });
    },
  };
}

/**
 * The URL as logs, metrics and the API show it: its origin and the start of the sha256 of the
 * whole URL. Receivers carry keys in the query, as user:password, or in the path itself (Slack,
 * Zapier and n8n catch URLs), so none of those is shown; the hash tells apart two receivers on one
 * host, which a redacted URL would not (they would share one name, and one of them get nothing).
 */
function describeWebhookUrl(text: string): string {
  const url = new URL(text);
  const rest = url.pathname === '/' && url.search === '' && url.username === '' && url.password === '' ? '' : '/…';
  return `${url.origin}${rest}#${createHash('sha256').update(text).digest('hex').slice(0, 8)}`;
}

/** The event's JSON: its type, when the fact became known, and the call as the API shows it. */
function webhookEvent(delivery: Delivery, call: StoredCall, now: number, links: RecordingLinks) {
  const { attachment, ...fields } = presentCall(call);
  const recording = call.recording;
  return {
    type: WEBHOOK_EVENT_TYPES[delivery.kind],
    timestamp: new Date(delivery.createdAt).toISOString(),
    data: {
      ...fields,
      attachment: { state: attachment.state, reason: attachment.reason },
      ...(delivery.kind === 'recording_unavailable' ? { reason: delivery.reason } : {}),
      ...(delivery.kind === 'recording' && recording !== null
        ? {
            recording: {
              size: recording.size,
              sha256: recording.sha256,
              // The type we serve it with: rows from older releases may hold an upstream's header.
              content_type: recording.key === null ? recording.contentType : servedRecordingMediaType(recording.contentType, recording.key),
              duration_seconds: recording.durationSeconds,
              // Gone already (retention) by the time this is sent: no link to a file that is not there.
              url: recording.key === null ? null : links.linkFor(call.callId, now),
            },
          }
        : {}),
    },
  };
}

function describeLostAnswer(caught: unknown): string {
  const error = coerceError(caught);
  const code = (error as { code?: unknown }).code;
  if (code === 'UND_ERR_HEADERS_TIMEOUT') return 'no answer in time (the request may have arrived)';
  if (code === 'UND_ERR_SOCKET') return 'connection closed before an answer (the request may have arrived)';
  return `${error.message} (the request may have arrived)`;
}

async function drain(body: AsyncIterable<Buffer> & { destroy(): void }): Promise<void> {
  let read = 0;
  try {
    for await (const chunk of body) {
      read += chunk.length;
      if (read > MAX_ANSWER_BYTES) break;
    }
  } catch {
    // The status is what counts; a body cut short does not change it.
  } finally {
    body.destroy();
  }
}
