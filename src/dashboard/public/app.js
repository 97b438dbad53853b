import { loadSession, signOut, signedInWithSession, whenUnauthorized } from './api.js';
import { fill, h } from './dom.js';
import { startHealth } from './health.js';
import { LOCALES, currentLocale, setLocale, t } from './i18n.js';
import { startLive, stopLive } from './live.js';
import { renderCall } from './views/call.js';
import { renderCalls } from './views/calls.js';
import { renderDevices } from './views/devices.js';
import { renderSignIn } from './views/sign-in.js';

/** Each page: its path, and the view that draws it into <main> (returning what to undo on leaving). */
const ROUTES = [
  { pattern: /^\/$/, view: renderCalls, nav: 'calls' },
  { pattern: /^\/calls\/([^/]+)$/, view: renderCall, nav: 'calls' },
  { pattern: /^\/devices$/, view: renderDevices, nav: 'devices' },
  { pattern: /^\/sign-in$/, view: renderSignIn, signIn: true },
];

const main = document.getElementById('main');
const header = document.getElementById('top');
const announcer = document.getElementById('announcer');
let leaveView = () => {};
let health = null;
let firstRender = true;

/** Polite announcements for screen readers (new calls, results of actions). */
export function announce(text) {
  announcer.textContent = '';
  // A new text node after a tick: announced even when the same words come twice.
  setTimeout(() => (announcer.textContent = text), 50);
}

export function navigate(url, { replace = false } = {}) {
  const target = new URL(url, location.href);
  if (target.origin !== location.origin) return;
  history[replace ? 'replaceState' : 'pushState'](null, '', target.pathname + target.search + target.hash);
  render();
}

function goToSignIn() {
  if (location.pathname === '/sign-in') return;
  navigate(`/sign-in?next=${encodeURIComponent(location.pathname + location.search)}`, { replace: true });
}

function render() {
  const route = ROUTES.find((each) => each.pattern.test(location.pathname)) ?? ROUTES[0];
  const params = route.pattern.exec(location.pathname)?.slice(1).map(decodeURIComponent) ?? [];
  leaveView();
  document.body.classList.toggle('signed-out', Boolean(route.signIn));
  renderHeader(route);
  if (route.signIn) {
    stopLive();
    health?.stop();
    health = null;
  } else {
    startLive();
    health ??= startHealth(document.getElementById('health'), document.getElementById('banner'));
  }
  main.replaceChildren();
  leaveView = route.view(main, { params, query: new URLSearchParams(location.search), navigate, announce }) ?? (() => {});
  // Keyboard and screen-reader users land on the new page's heading, not at the top of the old one.
  if (!firstRender) main.querySelector('h1')?.focus();
  firstRender = false;
}

function renderHeader(route) {
  document.getElementById('skip').textContent = t('skip');
  const link = (href, key, name) => h('a', { href, 'data-nav': '', 'aria-current': route.nav === name ? 'page' : null }, t(key));
  const languages = h(
    'select',
    { id: 'language', onchange: (event) => { setLocale(event.target.value); health?.refresh(); render(); } },
    LOCALES.map(({ code, name }) => h('option', { value: code, lang: code, selected: code === currentLocale() }, name)),
  );
  fill(
    header,
    h('a', { class: 'brand', href: '/', 'data-nav': '' }, t('app.name')),
    route.signIn ? null : h('nav', { 'aria-label': t('nav.main') }, link('/', 'nav.calls', 'calls'), link('/devices', 'nav.devices', 'devices')),
    h('div', { class: 'tools' },
      h('label', { class: 'language' }, h('span', {}, t('language')), languages),
      !route.signIn && signedInWithSession()
        ? h('button', { type: 'button', class: 'quiet', onclick: async () => { await signOut().catch(() => {}); navigate('/sign-in', { replace: true }); } }, t('signOut'))
        : null,
    ),
  );
}

// Links marked data-nav change the page without reloading it; a modified click opens a tab as usual.
document.addEventListener('click', (event) => {
  const anchor = event.target.closest?.('a[data-nav]');
  if (!anchor || event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  event.preventDefault();
  navigate(anchor.href);
});
window.addEventListener('popstate', render);
whenUnauthorized(goToSignIn);

const session = await loadSession();
if (session === 'signed-out' && location.pathname !== '/sign-in') goToSignIn();
else render();
