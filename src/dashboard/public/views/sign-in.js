import { ApiError, signIn } from '../api.js';
import { fill, h } from '../dom.js';
import { t } from '../i18n.js';
import { explainError, heading } from './common.js';

/** The password (or API token) form; on success, back to the page the user came from. */
export function renderSignIn(main, { navigate }) {
  document.title = `${t('signIn.title')} · ${t('app.name')}`;
  const error = h('p', { class: 'form-error', id: 'sign-in-error', role: 'alert' });
  const password = h('input', { type: 'password', name: 'password', id: 'password', autocomplete: 'current-password', required: true, 'aria-describedby': 'sign-in-hint sign-in-error' });
  const submit = h('button', { type: 'submit', class: 'primary' }, t('signIn.submit'));
  const form = h('form', { class: 'sign-in', method: 'post', action: '/sign-in' },
    h('label', { for: 'password' }, t('signIn.password')),
    password,
    h('p', { class: 'hint', id: 'sign-in-hint' }, t('signIn.hint')),
    error,
    submit);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    submit.disabled = true;
    error.textContent = '';
    try {
      await signIn(password.value);
      navigate(returnPath(), { replace: true });
    } catch (caught) {
      const status = caught instanceof ApiError ? caught.status : 0;
      fill(error, status === 401 ? t('signIn.wrong') : status === 429 ? t('signIn.locked', { seconds: caught.retryAfter ?? '…' }) : t('signIn.failed', { error: explainError(caught) }));
      password.select();
      password.focus();
    } finally {
      submit.disabled = false;
    }
  });
  fill(main, h('div', { class: 'sign-in-box' }, heading(t('signIn.title')), form));
  password.focus();
}

/**
 * Where to go after signing in: the page the user was sent here from, on this site only. Read as
 * the browser reads a URL (it drops tabs and line breaks, takes a backslash for "/"), so that
 * "/<tab>/evil.example" is seen as another site; that, and the sign-in page itself, lead to the calls.
 */
function returnPath() {
  const next = new URLSearchParams(location.search).get('next') ?? '/';
  if (!next.startsWith('/')) return '/';
  const target = new URL(next, location.origin);
  return target.origin === location.origin && target.pathname !== '/sign-in' ? target.pathname + target.search + target.hash : '/';
}
