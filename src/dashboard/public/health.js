import { get } from './api.js';
import { fill, h, throttle } from './dom.js';
import { absoluteTime, relativeTime } from './format.js';
import { t } from './i18n.js';
import { onLive } from './live.js';

const REFRESH_MS = 30_000;
/**
 * On live events, at most this often: the counts cost the server a pass over every call, and a
 * busy service sends events all the time to every open page.
 */
const LIVE_REFRESH_MS = 5_000;
/** States worth a glance even at zero. */
const ALWAYS_SHOWN = ['pending', 'failed', 'attached'];

/** The strip under the header (GET /api/summary), and the silence banner; refreshed on live events (at most every 5 s) and every 30 s. */
export function startHealth(strip, banner) {
  let last = null;
  const refresh = async () => {
    try {
      last = await get('/api/summary');
    } catch {
      last = null;
    }
    draw();
  };
  const draw = () => {
    strip.hidden = last === null;
    banner.hidden = !last?.webhooks?.silent;
    if (last === null) return;
    strip.setAttribute('aria-label', t('health.label'));
    const { calls_by_state: states = {}, downloads = {}, readiness = {}, webhooks = {} } = last;
    const status = readiness.status ?? 'unavailable';
    fill(
      strip,
      h('span', { class: `pill ready-${status}` }, t(`health.${status}`)),
      Object.entries(states)
        .filter(([state, count]) => count > 0 || ALWAYS_SHOWN.includes(state))
        .map(([state, count]) => h('span', { class: 'stat', 'data-state': state }, h('span', { class: `dot state-${state}`, 'aria-hidden': 'true' }), `${t(`state.${state}`)} `, h('strong', {}, String(count)))),
      h('span', { class: 'stat' }, `${t('health.waiting')} `, h('strong', {}, String(downloads.waiting ?? 0))),
      downloads.running ? h('span', { class: 'stat' }, `${t('health.running')} `, h('strong', {}, String(downloads.running))) : null,
      h('span', { class: 'stat' }, `${t('health.oldest')} `, h('strong', { title: absoluteTime(downloads.oldest_waiting_since) }, downloads.oldest_waiting_since ? relativeTime(downloads.oldest_waiting_since) : t('health.none'))),
    );
    // The banner is an alert: screen readers read it out whenever its text changes, so it names a
    // fixed time (not "5 minutes ago", which would change, and be read out, on every refresh).
    const warning = webhooks.last_received_at ? t('banner.silent', { since: absoluteTime(webhooks.last_received_at) }) : t('banner.silentNever');
    if (banner.textContent !== warning) fill(banner, warning);
  };
  const soon = throttle(refresh, LIVE_REFRESH_MS);
  const unsubscribe = onLive(soon);
  const timer = setInterval(refresh, REFRESH_MS);
  void refresh();
  return {
    refresh: draw,
    stop() {
      unsubscribe();
      soon.cancel();
      clearInterval(timer);
      strip.hidden = true;
      banner.hidden = true;
    },
  };
}
