import type { FastifyReply, FastifyRequest } from 'fastify';
import type { AppDeps } from '../http/app-deps.ts';
import { sendRefusal } from '../http/secret-guard.ts';

/** The onRequest hook of every authenticated route: `Authorization: Bearer <API_TOKEN>`. */
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
