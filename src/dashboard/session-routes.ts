import type { FastifyReply, FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import { checkCsrf } from '../api/api-auth.ts';
import type { AppDeps } from '../http/app-deps.ts';
import { sendRefusal } from '../http/secret-guard.ts';
import { BODY_ERRORS, CSRF_ERROR, errorBody, IsoTime, NoBody, SERVER_ERRORS, type App } from '../http/schemas.ts';
import { secretsMatch } from '../http/secrets.ts';
import { SESSION_COOKIE, type DashboardSessions, type LiveSession } from './dashboard-sessions.ts';

const TAGS = ['session'];
const SessionSchema = Type.Object(
  {
    csrf_token: Type.String({ description: 'Send as X-CSRF-Token with every write made with the session cookie' }),
    expires_at: IsoTime,
  },
  { additionalProperties: false },
);
const NOT_SIGNED_IN = { 401: errorBody('No session cookie, or an expired or signed-out session') } as const;

/**
 * Dashboard sign-in and sign-out: `POST/GET/DELETE /api/session`. Only registered with the
 * dashboard on (otherwise these paths answer 404, and cookies are ignored everywhere).
 */
export function registerSessionRoutes(app: App, deps: AppDeps): void {
  const sessions = deps.sessions;
  if (sessions === null) return;
  const dashboardPassword = deps.config.dashboard.password;

  /** Both compared every time, in constant time, whichever matches. */
  function signsIn(presented: unknown): boolean {
    const token = secretsMatch(presented, deps.apiToken);
    const password = dashboardPassword !== undefined && secretsMatch(presented, dashboardPassword);
    return token || password;
  }

  void app.register(async (scope: App) => {
    // The CSRF token is in these answers: no cache may keep one.
    scope.addHook('onSend', async (_request, reply) => {
      reply.header('cache-control', 'no-store');
    });

    scope.post(
      '/api/session',
      {
        schema: {
          summary: 'Sign in to the dashboard: sets the session cookie',
          tags: TAGS,
          body: Type.Object(
            { password: Type.String({ maxLength: 1024, description: 'DASHBOARD_PASSWORD, or the API token' }) },
            { additionalProperties: false },
          ),
          response: {
            200: Type.Object(SessionSchema.properties, { additionalProperties: false, description: 'Signed in; the cookie is set' }),
            ...BODY_ERRORS,
            401: errorBody('Wrong password'),
            429: errorBody('Too many wrong tokens or passwords from this address: locked out for the time Retry-After says'),
            ...SERVER_ERRORS,
          },
        },
      },
      async (request, reply) => {
        // The same count as wrong bearer tokens: a password guessed here is a token guessed there.
        const check = await deps.secretGuards.api.check(request.ip, request.body.password, signsIn);
        if (check.result !== 'ok') {
          deps.metrics.authFailures.inc({ endpoint: 'api', result: check.result === 'wrong' ? 'unauthorized' : 'locked_out' });
          if (check.result === 'locked-out') return sendRefusal(reply, check, 'wrong password');
          return reply.code(401).send({ error: 'wrong password', field: 'password' });
        }
        // Signing in again ends the session the browser had: one browser, one live session.
        const previous = request.cookies[SESSION_COOKIE];
        if (previous !== undefined) await sessions.signOut(previous);
        const session = await sessions.signIn();
        void reply.setCookie(SESSION_COOKIE, session.cookie, { ...cookieOptions(request), maxAge: Math.floor(sessions.ttlMs / 1000) });
        request.log.info('Dashboard: signed in');
        return presentSession(session);
      },
    );

    scope.get(
      '/api/session',
      {
        schema: {
          summary: "The session's CSRF token and expiry",
          tags: TAGS,
          security: [{ session: [] }],
          response: { 200: Type.Object(SessionSchema.properties, { additionalProperties: false, description: 'Signed in' }), ...NOT_SIGNED_IN, ...SERVER_ERRORS },
        },
      },
      async (request, reply) => {
        const found = await findSession(sessions, request);
        // A dead cookie is dropped, rather than sent with every request until it expires.
        if (found === null && request.cookies[SESSION_COOKIE] !== undefined) void reply.clearCookie(SESSION_COOKIE, cookieOptions(request));
        if (found === null) return sendSignedOut(reply);
        return presentSession(found.session);
      },
    );

    scope.delete(
      '/api/session',
      {
        schema: {
          summary: 'Sign out: ends the session and clears its cookie',
          tags: TAGS,
          security: [{ session: [] }],
          response: { 204: NoBody('Signed out'), ...NOT_SIGNED_IN, ...CSRF_ERROR, ...BODY_ERRORS, ...SERVER_ERRORS },
        },
      },
      async (request, reply) => {
        const found = await findSession(sessions, request);
        if (found === null) return sendSignedOut(reply);
        const refused = checkCsrf(request, reply, found.session);
        if (refused !== undefined) return refused;
        await sessions.signOut(found.cookie);
        return reply.clearCookie(SESSION_COOKIE, cookieOptions(request)).code(204).send();
      },
    );
  });
}

/** Secure when the browser came over HTTPS (behind a proxy, as TRUST_PROXY lets it say). */
function cookieOptions(request: FastifyRequest) {
  return { path: '/', httpOnly: true, sameSite: 'strict', secure: request.protocol === 'https' } as const;
}

async function findSession(sessions: DashboardSessions, request: FastifyRequest): Promise<{ cookie: string; session: LiveSession } | null> {
  const cookie = request.cookies[SESSION_COOKIE];
  if (cookie === undefined) return null;
  const session = await sessions.find(cookie);
  return session === null ? null : { cookie, session };
}

/** Not a wrong secret (nothing was presented that could be guessed), so not counted toward the lock-out. */
function sendSignedOut(reply: FastifyReply) {
  return reply.code(401).send({ error: 'not signed in' });
}

function presentSession(session: LiveSession) {
  return { csrf_token: session.csrfToken, expires_at: new Date(session.expiresAt).toISOString() };
}
