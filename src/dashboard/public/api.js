/** The page's only way to the service: same origin, the session cookie, X-CSRF-Token on writes. */

let csrfToken = null;
let onUnauthorized = () => {};

export class ApiError extends Error {
  constructor(status, body, retryAfter) {
    super(body?.error ?? `HTTP ${status}`);
    this.status = status;
    this.field = body?.field;
    this.retryAfter = retryAfter;
  }
}

/** Called with no argument when the service answers 401: the page shows the sign-in view. */
export function whenUnauthorized(handler) {
  onUnauthorized = handler;
}

export const signedInWithSession = () => csrfToken !== null;

/**
 * 'signed-in' (a live session), 'signed-out' (401), or 'unknown' (no session endpoint answered:
 * the API itself will say whether the page may read).
 */
export async function loadSession() {
  try {
    const response = await fetch('/api/session', { credentials: 'same-origin', headers: { accept: 'application/json' } });
    if (response.ok) {
      csrfToken = (await response.json()).csrf_token;
      return 'signed-in';
    }
    return response.status === 401 ? 'signed-out' : 'unknown';
  } catch {
    return 'unknown';
  }
}

export async function signIn(password) {
  const body = await request('POST', '/api/session', { password }, { quietUnauthorized: true });
  csrfToken = body.csrf_token;
}

export async function signOut() {
  try {
    await request('DELETE', '/api/session');
  } finally {
    csrfToken = null;
  }
}

export const get = (path) => request('GET', path);
export const post = (path, body) => request('POST', path, body);

async function request(method, path, body, { quietUnauthorized = false } = {}) {
  const headers = { accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (method !== 'GET' && method !== 'HEAD' && csrfToken !== null) headers['x-csrf-token'] = csrfToken;
  const response = await fetch(path, { method, headers, credentials: 'same-origin', body: body === undefined ? undefined : JSON.stringify(body) });
  if (response.status === 204) return null;
  const answer = await response.json().catch(() => null);
  if (!response.ok) {
    if (response.status === 401 && !quietUnauthorized) {
      csrfToken = null;
      onUnauthorized();
    }
    throw new ApiError(response.status, answer, Number(response.headers.get('retry-after')) || undefined);
  }
  return answer;
}
