import type { AppDeps } from '../http/app-deps.ts';
import { API_SECURITY, AUTH_ERRORS, mediaBody, SERVER_ERRORS, type App } from '../http/schemas.ts';
import type { LiveStream } from '../live/call-changes.ts';
import { checkApiAccess } from './api-auth.ts';

/** How long EventSource waits before reconnecting after the stream ends. */
const RECONNECT_MS = 3_000;
/** A client this far behind in reading is cut off; its EventSource reconnects. */
const MAX_UNREAD_BYTES = 1024 * 1024;

/**
 * GET /api/live: server-sent events of changed calls (see src/live/call-changes.ts).
 * Written by hand on the raw response rather than with an SSE plugin: the hub writes one
 * already-formatted text to every stream, where plugins serialise each event per stream.
 */
export function registerLiveRoutes(app: App, deps: AppDeps): void {
  void app.register(
    async (api: App) => {
      api.addHook('onRequest', (request, reply) => checkApiAccess(deps, request, reply));

      // No HEAD: it would hold a connection open with nothing to send.
      api.get(
        '/live',
        {
          exposeHeadRoute: false,
          schema: {
            summary: 'Server-sent events: calls as they change',
            description:
              'Starts with `retry: 3000`. Then `calls` events, whose data is `{"calls":[...]}` (the changed calls as GET /api/calls shows them), and `resync` events (data `{}`) when too many changed at once: read the list again.',
            tags: ['calls'],
            security: API_SECURITY,
            response: { 200: mediaBody('The event stream, open until the client or the service ends it', 'text/event-stream'), ...AUTH_ERRORS, ...SERVER_ERRORS },
          },
        },
        async (_request, reply) => {
          reply.hijack();
          const response = reply.raw;
          response.writeHead(200, {
            'content-type': 'text/event-stream; charset=utf-8',
            'cache-control': 'no-store',
            // nginx would otherwise hold events back in its buffer.
            'x-accel-buffering': 'no',
            'x-content-type-options': 'nosniff',
          });
          response.write(`retry: ${RECONNECT_MS}\n\n`);
          // A write racing the client's going away fails on the response; it has nothing to tell.
          response.on('error', () => {});
          const stream: LiveStream = {
            write(text) {
              if (response.writableEnded || response.destroyed) return;
              if (response.writableLength > MAX_UNREAD_BYTES) response.end();
              else response.write(text);
            },
            end() {
              if (!response.writableEnded) response.end();
            },
          };
          response.once('close', deps.callChanges.subscribe(stream));
        },
      );
    },
    { prefix: '/api' },
  );
}
