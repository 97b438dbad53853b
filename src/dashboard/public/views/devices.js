import { get } from '../api.js';
import { fill, h } from '../dom.js';
import { absoluteTime, relativeTime } from '../format.js';
import { t } from '../i18n.js';
import { onLive } from '../live.js';
import { errorNotice, heading, loadingNotice } from './common.js';

/** WaVoIP's devices: status, phone, when their last webhook came, and whether they went silent. */
export function renderDevices(main) {
  document.title = `${t('devices.title')} · ${t('app.name')}`;
  const status = h('div', {}, loadingNotice());
  const tbody = h('tbody');
  const more = h('p', { class: 'pager' });
  const columns = ['device', 'phone', 'status', 'lastWebhook', 'calls', 'silent'];
  const table = h('table', { class: 'devices', hidden: true },
    h('caption', { class: 'visually-hidden' }, t('devices.title')),
    h('thead', {}, h('tr', {}, columns.map((column) => h('th', { scope: 'col' }, t(`devices.col.${column}`))))),
    tbody);
  fill(main, heading(t('devices.title')), status, table, more);

  // Only the answer to the last read started is drawn (a resync can overlap the first read or "More").
  let latestLoad = 0;
  const load = async (cursor = null) => {
    const thisLoad = ++latestLoad;
    let page;
    try {
      page = await get(`/api/devices${cursor ? `?cursor=${encodeURIComponent(cursor)}` : ''}`);
    } catch (error) {
      if (thisLoad === latestLoad && error.status !== 401) fill(status, errorNotice(error, () => load()));
      return;
    }
    if (thisLoad !== latestLoad) return;
    const cell = (column, ...content) => h('td', { class: column, 'data-label': t(`devices.col.${column}`) }, ...content);
    const rows = page.devices.map((device) => h('tr', { 'data-device': device.id_session },
      cell('device', h('code', {}, device.id_session)),
      cell('phone', device.phone ?? device.phone_raw ?? ''),
      cell('status', h('span', { class: `badge device-${device.status}` }, t(`device.${device.status}`))),
      cell('lastWebhook', device.last_webhook_at ? h('time', { datetime: device.last_webhook_at, title: absoluteTime(device.last_webhook_at) }, relativeTime(device.last_webhook_at)) : t('devices.never')),
      cell('calls', String(device.calls_last_24h)),
      cell('silent', device.silent ? h('span', { class: 'badge silent' }, `⚠ ${t('devices.silent')}`) : h('span', { class: 'badge ok' }, t('devices.ok'))),
    ));
    if (cursor === null) fill(tbody, rows);
    else tbody.append(...rows);
    table.hidden = tbody.childElementCount === 0;
    fill(status, tbody.childElementCount === 0 ? h('p', { class: 'notice' }, t('devices.empty')) : null);
    fill(more, page.next_cursor ? h('button', { type: 'button', onclick: () => load(page.next_cursor) }, t('devices.more')) : null);
  };
  const unsubscribe = onLive((event) => {
    if (event.type === 'resync') void load();
  });
  void load();
  return unsubscribe;
}
