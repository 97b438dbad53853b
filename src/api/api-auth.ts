import type { FastifyReply, FastifyRequest } from 'fastify';
import { CSRF_HEADER, SESSION_COOKIE, type LiveSession } from '../dashboard/dashboard-sessions.ts';
import type { AppDeps } from '../http/app-deps.ts';
import { sendRefusal } from '../http/secret-guard.ts';
import { secretsMatch } from '../http/secrets.ts';

type AuthDeps = Pick<AppDeps, 'apiToken' | 'secretGuards' | 'metrics' | 'sessions'>;

/** Methods that change nothing: a cookie alone may make them (SameSite=Strict keeps other sites out). */
const SAFE_METHODS = new Set(['GET', 'HEAD']);

/**
 * The onRequest hook of every /api route: `Authorization: Bearer <API_TOKEN>`, or a live
 * dashboard session cookie, which must bring its `X-CSRF-Token` for anything but GET and HEAD.
 */
export async function checkApiAccess(deps: AuthDeps, request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply | undefined> {
  // Call data, for this reader only: a cookie, unlike an Authorization header, does not keep a
  // shared cache from storing an answer, and a browser should keep no copy past sign-out.
  reply.header('cache-control', 'private, no-store');
  const cookie = deps.sessions === null || request.headers.authorization !== undefined ? undefined : request.cookies[SESSION_COOKIE];
  if (cookie === undefined || deps.sessions === null) return checkApiToken(deps, request, reply);
  const session = await deps.sessions.find(cookie);
  // Not counted toward the lock-out: a cookie of 32 random bytes is not guessed, and a page left
  // open past its session's expiry would otherwise lock its own address out of signing in again.
  if (session === null) return reply.code(401).send({ error: 'session expired or signed out; sign in again' });
  return checkCsrf(request, reply, session);
}

/** A write made with the session cookie must name the session's CSRF token, which no other site can read. */
export function checkCsrf(request: FastifyRequest, reply: FastifyReply, session: LiveSession): FastifyReply | undefined {
  if (SAFE_METHODS.has(request.method) || secretsMatch(request.headers[CSRF_HEADER], session.csrfToken)) return undefined;
  return reply.code(403).send({ error: 'missing or wrong CSRF token: send X-CSRF-Token', field: CSRF_HEADER });
}

/** `Authorization: Bearer <API_TOKEN>` only: /metrics, which no browser page reads. */
export async function checkApiToken(
  deps: Pick<AppDeps, 'apiToken' | 'secretGuards' | 'metrics'>,
  request: FastifyRequest,
  reply: FastifyReply,
): Promise<FastifyReply | undefined> {
  const match = /^Bearer (.+)$/i.exec(request.headers.authorization ?? '');
  const check = await deps.secretGuards.api.check(request.ip, match?.[1]?.trim(), deps.apiToken);
  if (check.result === 'ok') return undefined;
  deps.metrics.authFailures.inc({ endpoint: 'api', result: check.result === 'wrong' ? 'unauthorized' : 'locked_out' });
  if (check.result === 'wrong') reply.header('www-authenticate', 'Bearer');
  return sendRefusal(reply, check, 'missing or wrong API token: send Authorization: Bearer <API_TOKEN>');
}
