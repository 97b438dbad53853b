import fastifyCookie from '@fastify/cookie';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyError, type FastifyReply } from 'fastify';
import type { IncomingMessage, ServerResponse } from 'node:http';
import secureJsonParse from 'secure-json-parse';
import { registerCallRoutes } from '../api/call-routes.ts';
import { registerDeviceRoutes } from '../api/device-routes.ts';
import { registerDeliveryRoutes } from '../api/delivery-routes.ts';
import { registerHealthRoutes } from '../api/health-routes.ts';
import { registerLiveRoutes } from '../api/live-routes.ts';
import { registerSummaryRoutes } from '../api/summary-routes.ts';
import { registerWebhookTokenRoutes } from '../api/webhook-token-routes.ts';
import { registerMetricsRoutes } from '../metrics/metrics-routes.ts';
import { registerDashboardRoutes } from '../dashboard/dashboard-routes.ts';
import { isDatabaseUnavailable } from '../db/database.ts';
import { AppError, coerceError } from '../errors.ts';
import { RECORDING_LINK_PATH } from '../delivery/recording-link.ts';
import { redactUrl } from '../log/logger.ts';
import { registerSessionRoutes } from '../dashboard/session-routes.ts';
import { registerWebhookRoutes } from '../webhook/webhook-routes.ts';
import type { AppDeps } from './app-deps.ts';
import { answerClientError } from './client-errors.ts';
import { registerOpenApi } from './openapi.ts';
import type { App } from './schemas.ts';

/** WaVoIP's documented events are a few hundred bytes; production consumers cap at 64 KB too. */
const WEBHOOK_BODY_LIMIT = 64 * 1024;
/**
 * WaVoIP's events are flat objects. A deeper body is refused at the door, so that nothing
 * downstream (serialising it back in the API, say) can run out of stack on it.
 */
const MAX_JSON_DEPTH = 32;

declare module 'fastify' {
  interface FastifyRequest {
    /** The JSON body exactly as received, kept as the raw event. */
    rawBody: string | undefined;
  }
}

/**
 * Sending headers and body must not take longer than this: a client that stalls (slowloris)
 * gets 408 and its connection closed, rather than holding it for ever. WaVoIP's events are a
 * few hundred bytes. Answering has no such bound (a recording can take long to stream).
 */
const HTTP_REQUEST_TIMEOUT_MS = 30_000;
/** Long enough for a database fail-over or a restart, short enough not to hold events back. */
const RETRY_AFTER_UNAVAILABLE_SECONDS = 5;

interface AppOptions {
  requestTimeoutMs?: number;
}

export function buildApp(deps: AppDeps, options: AppOptions = {}): App {
  const requestTimeoutMs = options.requestTimeoutMs ?? HTTP_REQUEST_TIMEOUT_MS;
  const app = Fastify({
    loggerInstance: deps.logger as FastifyBaseLogger,
    // Webhooks and heartbeats would flood the log; the routes log what matters themselves.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: WEBHOOK_BODY_LIMIT,
    requestTimeout: requestTimeoutMs,
    http: {
      // Node would answer a missing Host itself, with an empty 400; the onRequest hook below
      // answers it in the one error shape.
      requireHostHeader: false,
      // Node swaps the two timeouts when headersTimeout (60 s by default) is the longer one, and
      // a stalled body would then be given 60 s.
      headersTimeout: requestTimeoutMs,
      requestTimeout: requestTimeoutMs,
      // Node looks for timed-out requests only this often (30 s by default, which would let a
      // stalled request live up to twice the timeout).
      connectionsCheckingInterval: Math.max(Math.ceil(requestTimeoutMs / 10), 10),
    },
    // request.ip, which the token lock-out counts by, is the client's only when proxies are named.
    trustProxy: deps.config.trustProxy.length > 0 ? deps.config.trustProxy : false,
    // Call ids are up to 128 characters, and the router counts a parameter after decoding.
    routerOptions: { maxParamLength: 512 },
    // An undecodable URL: answered like every other client error.
    // The message quotes the URL, whose token must not travel back through proxies' logs.
    frameworkErrors: (error, request, reply) =>
      void (reply as FastifyReply).code(400).send({ error: error.message.replaceAll(request.url, redactRequestUrl(request.url)) }),
    // Unknown query parameters are refused by name rather than silently dropped (a typo like
    // `status=failed` for `state=failed` would otherwise list every call).
    ajv: { customOptions: { removeAdditional: false } },
    clientErrorHandler: answerClientError,
    // Its 503 while closing has a body of another shape; the onRequest hook below answers instead.
    return503OnClosing: false,
  }).withTypeProvider<TypeBoxTypeProvider>();

  // Only JSON is taken anywhere; Fastify would otherwise hand plain text to the routes. Its own
  // JSON parser drops the parse error, and the sender deserves to know what was wrong.
  app.removeContentTypeParser(['text/plain', 'application/json']);
  app.decorateRequest('rawBody', undefined);
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    // A byte-order mark is not part of the JSON: stored with it, the raw event could not be read back.
    const text = (body as string).replace(/^\uFEFF/, '');
    if (text === '') return done(new AppError('body is empty; expected a JSON object', { code: 'EMPTY_BODY', statusCode: 400 }));
    let parsed: unknown;
    try {
      parsed = secureJsonParse.parse(text, { protoAction: 'error', constructorAction: 'error' });
    } catch (caught) {
      return done(new AppError(`body is not valid JSON: ${coerceError(caught).message}`, { code: 'INVALID_JSON', statusCode: 400 }));
    }
    if (exceedsDepth(parsed, MAX_JSON_DEPTH)) {
      return done(new AppError(`body is nested more than ${MAX_JSON_DEPTH} levels deep`, { code: 'TOO_DEEP', statusCode: 400 }));
    }
    request.rawBody = text;
    done(null, parsed);
  });

  app.setErrorHandler((error: FastifyError, request, reply) => {
    const ownStatus = error.statusCode !== undefined && error.statusCode >= 400 ? error.statusCode : undefined;
    const unavailable = ownStatus === undefined && isDatabaseUnavailable(error);
    const statusCode = ownStatus ?? (unavailable ? 503 : 500);
    if (statusCode >= 500) {
      request.log.error({ err: error, url: redactRequestUrl(request.url) }, 'Request failed');
      // The database out of reach for now: say so, and when to come back (WaVoIP sends an
      // unacknowledged event again). Any other 5xx is ours; its details stay in the log.
      if (unavailable) {
        return reply
          .code(503)
          .header('retry-after', String(RETRY_AFTER_UNAVAILABLE_SECONDS))
          .send({ error: 'temporarily unable to use the database; try again later' });
      }
      if (statusCode === 503) return reply.code(503).send({ error: 'service unavailable; try again later' });
      return reply.code(500).send({ error: 'internal error' });
    }
    return reply.code(statusCode).send(describeClientError(error));
  });
  app.setNotFoundHandler((request, reply) =>
    reply.code(404).send({ error: `no route for ${request.method} ${redactRequestUrl(request.url).split('?')[0]}` }),
  );

  // A request arriving on an open connection while the service shuts down: sent to another replica.
  let closing = false;
  app.addHook('preClose', async () => {
    closing = true;
  });
  app.addHook('onRequest', async (request, reply) => {
    if (closing) return reply.code(503).header('connection', 'close').send({ error: 'the service is shutting down; try again' });
    // HTTP/1.1 requires it (RFC 9112 §3.2); HTTP/1.0 clients may leave it out.
    if (request.headers.host === undefined && request.raw.httpVersion !== '1.0') {
      return reply.code(400).header('connection', 'close').send({ error: 'the Host header is required', field: 'host' });
    }
  });

  // Node answers an Expect header other than 100-continue by itself, with an empty 417.
  app.server.on('checkExpectation', (request: IncomingMessage, response: ServerResponse) => {
    response.writeHead(417, { 'content-type': 'application/json; charset=utf-8' });
    response.end(JSON.stringify({ error: `unsupported Expect header: ${JSON.stringify(request.headers.expect ?? '')}` }));
  });

  // Cookies are read only for dashboard sessions; with the dashboard off, none is looked at.
  if (deps.sessions !== null) void app.register(fastifyCookie);
  // Before the routes: the document is built from each route's schema as it is added.
  registerOpenApi(app);
  void app.register(async (routes: App) => {
    registerHealthRoutes(routes, deps);
    registerSessionRoutes(routes, deps);
    registerWebhookRoutes(routes, deps);
    registerCallRoutes(routes, deps);
    registerDeviceRoutes(routes, deps);
    registerWebhookTokenRoutes(routes, deps);
    registerDeliveryRoutes(routes, deps);
    registerSummaryRoutes(routes, deps);
    registerLiveRoutes(routes, deps);
    registerMetricsRoutes(routes, deps);
    if (deps.config.dashboard.enabled) registerDashboardRoutes(routes);
  });
  return app;
}

function describeClientError(error: FastifyError): { error: string; field?: string } {
  switch (error.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return { error: `body is larger than the ${WEBHOOK_BODY_LIMIT / 1024} KiB limit` };
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return { error: 'content type must be application/json' };
    default: {
      const field = invalidField(error);
      if (field === undefined) return { error: error.message };
      // Ajv names the object, not the parameter, for an unknown or missing one.
      const message = field.unknown ? `${field.name} is not a parameter of this request` : field.missing ? `${field.name} is required` : error.message;
      return { error: message, field: field.name };
    }
  }
}

/** The parameter a schema validation refused, when Ajv says which. */
function invalidField(error: FastifyError): { name: string; unknown: boolean; missing: boolean } | undefined {
  const [first] = error.validation ?? [];
  if (first === undefined) return undefined;
  const params = first.params as { additionalProperty?: string; missingProperty?: string };
  const name = params.additionalProperty ?? params.missingProperty ?? first.instancePath.replace(/^\//, '').replaceAll('/', '.');
  if (name === '') return undefined;
  return { name, unknown: params.additionalProperty !== undefined, missing: params.missingProperty !== undefined };
}

/** A request's URL for the log: no token in its query, and no signed recording link (the link is the credential). */
function redactRequestUrl(url: string): string {
  const redacted = redactUrl(url);
  return redacted.startsWith(`${RECORDING_LINK_PATH}/`) ? `${RECORDING_LINK_PATH}/[redacted]${redacted.replace(/^[^?#]*/, '')}` : redacted;
}

/** Iterative, so that the check itself cannot overflow the stack on a hostile body. */
function exceedsDepth(value: unknown, maxDepth: number): boolean {
  const stack: { value: unknown; depth: number }[] = [{ value, depth: 0 }];
  while (stack.length > 0) {
    const { value: current, depth } = stack.pop() as { value: unknown; depth: number };
    if (typeof current !== 'object' || current === null) continue;
    if (depth >= maxDepth) return true;
    for (const child of Object.values(current)) stack.push({ value: child, depth: depth + 1 });
  }
  return false;
}
