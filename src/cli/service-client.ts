import { localServiceUrl, type Config } from '../config/config.ts';
import { readStoredToken, tokenFile, type TokenKind } from '../config/token-files.ts';
import { AppError, coerceError } from '../errors.ts';
import { WEBHOOK_PATH } from '../webhook/webhook-routes.ts';

/** How the CLI talks to a running service: its API with the API token, its webhook with the webhook token. */
export async function callApi(config: Config, baseUrl: string | undefined, pathAndQuery: string, method = 'GET', body?: unknown): Promise<unknown> {
  const token = config.apiToken ?? (await readGeneratedToken(config, 'api'));
  const response = await fetchOrExplain(`${baseUrl ?? localServiceUrl(config.host, config.port)}${pathAndQuery}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const answer = (await response.json().catch(() => ({}))) as { error?: string };
  if (!response.ok) throw new AppError(answer.error ?? `the service answered ${response.status}`, { code: 'REQUEST_REFUSED' });
  return answer;
}

/** The webhook token the service checks: WEBHOOK_TOKEN, else the one it generated; null for `none`. */
export async function webhookTokenOf(config: Config): Promise<string | null> {
  if (config.webhookToken === null) return null;
  return config.webhookToken ?? readGeneratedToken(config, 'webhook');
}

/** The webhook URL at `origin` (a public address, or this machine's), with its token. */
export function webhookUrl(origin: string, token: string | null): string {
  return `${origin}${WEBHOOK_PATH}${token === null ? '' : `?token=${encodeURIComponent(token)}`}`;
}

async function readGeneratedToken(config: Config, kind: TokenKind): Promise<string> {
  const file = tokenFile(config.dataDir, kind);
  const token = await readStoredToken(file);
  if (token === undefined) {
    const variable = kind === 'api' ? 'API_TOKEN' : 'WEBHOOK_TOKEN';
    throw new AppError(`no ${kind} token in ${file}: start the service once from here (it generates one), or set ${variable}`, {
      code: 'NO_TOKEN',
    });
  }
  return token;
}

export async function fetchOrExplain(url: string, init: RequestInit): Promise<Response> {
  try {
    return await fetch(url, { ...init, signal: AbortSignal.timeout(15_000) });
  } catch (caught) {
    const reason = coerceError(caught);
    const detail = reason.cause instanceof Error ? reason.cause.message : reason.message;
    throw new AppError(`could not reach ${url.split('?')[0]}: ${detail} (is the service running?)`, { code: 'UNREACHABLE', cause: caught });
  }
}
