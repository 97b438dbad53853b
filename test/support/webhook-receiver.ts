import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { Webhook } from 'standardwebhooks';

/**
 * A loopback receiver of outbound webhooks, as a CRM or n8n would run one: every request's
 * signature is checked with the Standard Webhooks reference package (`Webhook.verify`), and it
 * answers as told, one answer per request, then 200.
 */
/** The secret tests configure (OUTBOUND_WEBHOOK_SECRET) and receivers verify with: whsec_ and base64 of 32 bytes. */
export const OUTBOUND_SECRET = `whsec_${Buffer.alloc(32, 42).toString('base64')}`;

export type ReceiverAnswer =
  | { kind: 'status'; status: number; headers?: Record<string, string> }
  /** Reads the request, then resets the connection: the sender never learns what happened. */
  | { kind: 'reset' }
  /** Reads the request and never answers (the sender's timeout decides). */
  | { kind: 'stall' }
  /** Answers 200 once `until` settles: a delivery in flight for as long as the test wants. */
  | { kind: 'held'; until: Promise<unknown> }
  /** Answers 200 after `delayMs`: a receiver slower than the sender. */
  | { kind: 'delayed'; delayMs: number };

export interface ReceivedWebhook {
  id: string;
  timestamp: string;
  signature: string;
  body: string;
  /** The verified, parsed event; null when verification failed (then `error` says why). */
  event: WebhookEvent | null;
  error: string | null;
  /** The Authorization header, when one came. */
  authorization: string | undefined;
  /** What the receiver answered: a status, `reset` or `stall`. */
  answer: number | 'reset' | 'stall';
}

export interface WebhookEvent {
  type: string;
  timestamp: string;
  data: Record<string, unknown> & {
    whatsapp_call_id: string;
    reason?: string;
    recording?: { size: number; sha256: string; content_type: string; duration_seconds: number | null; url: string | null };
  };
}

export interface WebhookReceiver {
  url: string;
  /** Answers for the next requests, in order; afterwards each gets 200. */
  answerNext(...answers: ReceiverAnswer[]): void;
  /** Every request so far, oldest first. */
  received(): ReceivedWebhook[];
  /** The verified events that were answered 2xx, oldest first. */
  accepted(): ReceivedWebhook[];
  close(): Promise<void>;
}

export async function startWebhookReceiver(secret: string, options: { always?: ReceiverAnswer } = {}): Promise<WebhookReceiver> {
  const verifier = new Webhook(secret);
  const queue: ReceiverAnswer[] = [];
  const received: ReceivedWebhook[] = [];
  const sockets = new Set<Socket>();

  const server = createServer((request: IncomingMessage, response: ServerResponse) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const headers = Object.fromEntries(Object.entries(request.headers).map(([name, value]) => [name, String(value)]));
      let event: WebhookEvent | null = null;
      let error: string | null = null;
      try {
        event = verifier.verify(body, headers) as WebhookEvent;
      } catch (caught) {
        error = caught instanceof Error ? caught.message : String(caught);
      }
      const answer = queue.shift() ?? options.always ?? { kind: 'status', status: 200 };
      const record: ReceivedWebhook = {
        id: headers['webhook-id'] ?? '',
        timestamp: headers['webhook-timestamp'] ?? '',
        signature: headers['webhook-signature'] ?? '',
        authorization: headers.authorization,
        body,
        event,
        error,
        answer: answer.kind === 'status' ? answer.status : answer.kind === 'held' || answer.kind === 'delayed' ? 200 : answer.kind,
      };
      received.push(record);
      if (answer.kind === 'reset') {
        request.socket.resetAndDestroy();
      } else if (answer.kind === 'delayed') {
        setTimeout(() => response.writeHead(200).end('ok'), answer.delayMs);
      } else if (answer.kind === 'held') {
        void answer.until.then(() => response.writeHead(200).end('ok'));
      } else if (answer.kind === 'status') {
        response.writeHead(answer.status, answer.headers).end(answer.status < 300 ? 'ok' : 'no');
      }
    });
  });
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}/hooks/calls`,
    answerNext: (...answers) => queue.push(...answers),
    received: () => [...received],
    accepted: () => received.filter((each) => typeof each.answer === 'number' && each.answer < 300 && each.event !== null),
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
