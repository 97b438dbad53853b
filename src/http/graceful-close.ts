import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { FastifyInstance } from 'fastify';
import type { Logger } from '../log/logger.ts';

/**
 * Counts the requests in flight on `server` (headers read, answer not yet finished) and, once
 * draining, makes every answer end its connection. Keep-alive would otherwise leave a
 * connection open after its answer, and the server's close waits for every connection:
 * Fastify's keep-alive timeout is 72 s. Must be attached before the server listens.
 */
export function trackRequestsInFlight(server: Server) {
  const responses = new Set<ServerResponse>();
  let draining = false;
  server.on('request', (_request: IncomingMessage, response: ServerResponse) => {
    responses.add(response);
    response.once('close', () => {
      responses.delete(response);
      // An answer whose headers went out before draining began was sent keep-alive.
      if (draining) server.closeIdleConnections();
    });
  });
  return {
    count: (): number => responses.size,
    drain(): void {
      draining = true;
      for (const response of responses) if (!response.headersSent) response.setHeader('connection', 'close');
    },
  };
}

type RequestsInFlight = ReturnType<typeof trackRequestsInFlight>;

/**
 * Stops listening (new connections are refused, idle keep-alive ones closed, a request
 * arriving on an open one gets 503), waits for the requests in flight to be answered, and
 * after `graceMs` closes the connections still open: a client that never finishes sending its
 * body (or never reads its answer) cannot hold the shutdown. Node stops enforcing the request
 * timeout once the server closes, so this bound is the only one then.
 */
export async function closeGracefully(
  app: FastifyInstance,
  requests: RequestsInFlight,
  { graceMs, logger }: { graceMs: number; logger: Logger },
): Promise<void> {
  requests.drain();
  const closed = app.close().then(() => 'closed' as const);
  // Awaited below; this only keeps an early failure from counting as unhandled meanwhile.
  closed.catch(() => {});
  const graceOver = Date.now() + graceMs;
  // Fastify closes the listening socket a few ticks into close(); say so only once it has.
  while (app.server.listening && Date.now() < graceOver) await new Promise((resolve) => setTimeout(resolve, 1));
  const waiting = requests.count();
  logger.info(
    waiting === 0
      ? 'Shutting down: no longer accepting connections; no requests in flight'
      : `Shutting down: no longer accepting connections; waiting for ${count(waiting, 'request')} in flight (at most ${graceMs / 1000}s)`,
  );
  let timer: NodeJS.Timeout | undefined;
  const graceUp = new Promise<'grace-up'>((resolve) => (timer = setTimeout(() => resolve('grace-up'), Math.max(graceOver - Date.now(), 0))));
  const outcome = await Promise.race([closed, graceUp]);
  clearTimeout(timer);
  if (outcome === 'grace-up') {
    // A client still sending its headers has an open connection but no request yet.
    const open = await new Promise<number>((resolve) => app.server.getConnections((error, count) => resolve(error ? 0 : count)));
    logger.warn(
      `Shutting down: ${count(open, 'connection')} still open after ${graceMs / 1000}s ` +
        `(${count(requests.count(), 'request')} unfinished); closing ${open === 1 ? 'it' : 'them'}`,
    );
    app.server.closeAllConnections();
    await closed;
  } else if (waiting > 0) {
    logger.info('Shutting down: every request in flight was answered');
  }
}

function count(number: number, noun: string): string {
  return `${number} ${noun}${number === 1 ? '' : 's'}`;
}
